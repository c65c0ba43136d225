//! Posts as stored on a shard and as the api validates them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Id, Photo};

/// A post lives this long after creation or renewal.
pub const POST_LIFETIME: chrono::Duration = chrono::Duration::days(7);

/// Every category a post may have; the benches draw theirs from it too.
pub const CATEGORIES: &[&str] = &[
    "for-sale",
    "housing",
    "jobs",
    "services",
    "community",
    "gigs",
    "vehicles",
    "free",
];

/// What a poster writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PostFields {
    pub category: String,
    pub title: String,
    pub description: String,
    /// Whole currency units; none when the poster gave no price.
    pub price: Option<i64>,
    pub location: Option<String>,
    pub image_count: i16,
}

/// One invalid field and why, for a 422 that names every bad field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name as the client sent it.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl PostFields {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut bad = Vec::new();
        let mut err = |field, problem: &str| {
            bad.push(FieldError {
                field,
                problem: problem.to_string(),
            })
        };
        let title = self.title.trim().chars().count();
        if !(1..=200).contains(&title) {
            err("title", "must be 1 to 200 characters");
        }
        if self.description.chars().count() > 20_000 {
            err("description", "must be at most 20000 characters");
        }
        if let Some(p) = self.price
            && !(0..=1_000_000_000).contains(&p)
        {
            err("price", "must be between 0 and 1000000000");
        }
        if !CATEGORIES.contains(&self.category.as_str()) {
            err("category", "unknown category");
        }
        if !(0..=10).contains(&self.image_count) {
            err("image_count", "at most 10 images");
        }
        if self
            .location
            .as_ref()
            .is_some_and(|l| l.chars().count() > 200)
        {
            err("location", "must be at most 200 characters");
        }
        // Postgres text cannot hold NUL: refused here, not by the shard,
        // where it would fail the writer's whole batch.
        for (field, text) in [
            ("title", Some(&self.title)),
            ("description", Some(&self.description)),
            ("location", self.location.as_ref()),
        ] {
            if text.is_some_and(|t| t.contains('\0')) {
                err(field, "must not contain NUL characters");
            }
        }
        if bad.is_empty() { Ok(()) } else { Err(bad) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum PostStatus {
    Live,
    Hidden,
    Deleted,
    Expired,
}

/// A post can be renewed once this long has passed since it was posted or
/// last renewed: renewal moves it to the top of its listing, and more often
/// than every two days that would let a poster keep it there.
pub const RENEW_AFTER: chrono::Duration = chrono::Duration::hours(48);

/// A post row of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(from = "PostRecord")]
pub struct Post {
    pub city: String,
    pub id: Id,
    pub user_id: Id,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub fields: PostFields,
    pub status: PostStatus,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The listing's sort key: set at creation and by each renewal, never by
    /// an edit, so a renewed post comes back to the top and an edited one
    /// stays where it was.
    pub listed_at: DateTime<Utc>,
    /// Its photos in slot order (`post_images`, read separately where a
    /// page shows them: none in `POST_COLUMNS`). Events carry them, so the
    /// publisher renders the gallery from the event alone.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<Photo>,
}

/// From this instant on the post may be renewed.
pub fn renew_allowed_from(p: &Post) -> DateTime<Utc> {
    p.listed_at + RENEW_AFTER
}

/// `Post` as events carry it. Events written before `listed_at` existed
/// (still in the topics and dead letters) have none: such a post had never
/// been renewed under the new rule, so it is listed from its creation.
#[derive(Deserialize)]
struct PostRecord {
    city: String,
    id: Id,
    user_id: Id,
    #[serde(flatten)]
    fields: PostFields,
    status: PostStatus,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    #[serde(default)]
    listed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    photos: Vec<Photo>,
}

impl From<PostRecord> for Post {
    fn from(r: PostRecord) -> Self {
        Post {
            city: r.city,
            id: r.id,
            user_id: r.user_id,
            fields: r.fields,
            status: r.status,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            expires_at: r.expires_at,
            listed_at: r.listed_at.unwrap_or(r.created_at),
            photos: r.photos,
        }
    }
}

/// The columns of `Post`, for SELECTs.
pub const POST_COLUMNS: &str = "city, id, user_id, category, title, description, price, \
    location, image_count, status, version, created_at, updated_at, expires_at, listed_at";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named() {
        let f = PostFields {
            category: "weapons".into(),
            title: "  ".into(),
            description: "x".repeat(20_001),
            price: Some(-1),
            location: None,
            image_count: 11,
        };
        let fields: Vec<_> = f.validate().unwrap_err().iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["title", "description", "price", "category", "image_count"]
        );
    }

    fn post() -> Post {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Post {
            city: "boston".into(),
            id: Id(1),
            user_id: Id(2),
            fields: PostFields {
                category: "free".into(),
                title: "chair".into(),
                description: String::new(),
                price: None,
                location: None,
                image_count: 0,
            },
            status: PostStatus::Live,
            version: 3,
            created_at: at,
            updated_at: at,
            expires_at: at + POST_LIFETIME,
            listed_at: at + chrono::Duration::days(3),
            photos: Vec::new(),
        }
    }

    #[test]
    fn listed_at_round_trips_and_old_events_list_from_creation() {
        let p = post();
        let mut v = serde_json::to_value(&p).unwrap();
        assert_eq!(serde_json::from_value::<Post>(v.clone()).unwrap(), p);
        v.as_object_mut().unwrap().remove("listed_at");
        let old: Post = serde_json::from_value(v).unwrap();
        assert_eq!(old.listed_at, p.created_at);
    }

    #[test]
    fn renewal_is_allowed_two_days_after_listing() {
        let p = post();
        assert_eq!(
            renew_allowed_from(&p),
            p.listed_at + chrono::Duration::hours(48)
        );
    }
}
