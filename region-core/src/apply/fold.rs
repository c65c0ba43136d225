//! The pure part of apply: commands folded, in order, over the current rows
//! they touch. No database here, so every rule is unit-tested.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::SecondsFormat;

use crate::model::event::GoneReason;
use crate::model::photo::MAX_PHOTOS;
use crate::model::post::{POST_LIFETIME, renew_allowed_from};
use crate::model::{Command, CommandKind, Event, Id, Photo, Post, PostFields, PostStatus};

/// What happened to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; `version` is the post version it produced (none when it
    /// changed no post, e.g. a repeated report).
    Applied { version: Option<i64> },
    /// Valid in the log but not applicable (e.g. editing a deleted post):
    /// recorded so its status URL can say why, never retried.
    Rejected(String),
}

impl Outcome {
    pub fn as_db_text(&self) -> String {
        match self {
            Outcome::Applied { .. } => "applied".to_string(),
            Outcome::Rejected(why) => format!("rejected: {why}"),
        }
    }
}

/// A new report row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    pub city: String,
    pub post_id: Id,
    pub reporter_id: Id,
    pub reason: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A new `post_images` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub city: String,
    pub post_id: Id,
    pub slot: i16,
    pub photo: Photo,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Rows as read (locked) before folding.
#[derive(Debug, Default)]
pub struct Current {
    pub posts: HashMap<(String, Id), Post>,
    /// Existing reporters per post.
    pub reporters: HashMap<(String, Id), HashSet<Id>>,
}

#[derive(Debug, Default)]
pub struct Folded {
    /// Final state of every post that changed, to upsert.
    pub changed: HashMap<(String, Id), Post>,
    pub reports: Vec<NewReport>,
    pub images: Vec<NewImage>,
    /// Posts whose `post_images` rows go (deleted posts: their content is
    /// erased, photos included).
    pub cleared_images: Vec<(String, Id)>,
    pub events: Vec<Event>,
    pub outcomes: Vec<(Id, String, Outcome)>,
}

pub fn fold(commands: &[Command], mut current: Current, hide_after_reports: usize) -> Folded {
    let mut out = Folded::default();
    for c in commands {
        let outcome = match step(c, &mut current, hide_after_reports, &mut out) {
            Ok(version) => Outcome::Applied { version },
            Err(why) => Outcome::Rejected(why.to_string()),
        };
        out.outcomes.push((c.id, c.city.clone(), outcome));
    }
    out
}

fn step(
    c: &Command,
    cur: &mut Current,
    hide_after: usize,
    out: &mut Folded,
) -> Result<Option<i64>, Cow<'static, str>> {
    let city = c.city.clone();
    let now = c.created_at;
    match &c.kind {
        CommandKind::Create {
            post_id,
            user_id,
            post,
        } => {
            if cur.posts.contains_key(&(city.clone(), *post_id)) {
                return Err("a post with this id exists".into());
            }
            post.validate().map_err(|_| "invalid post")?;
            // Photos come after, each through `AddPhotos`: the count is
            // theirs, never what the client said.
            let fields = PostFields {
                image_count: 0,
                ..post.clone()
            };
            let p = Post {
                city: city.clone(),
                id: *post_id,
                user_id: *user_id,
                fields,
                status: PostStatus::Live,
                version: 1,
                created_at: now,
                updated_at: now,
                expires_at: now + POST_LIFETIME,
                listed_at: now,
                photos: Vec::new(),
            };
            Ok(Some(changed(c, cur, out, p)))
        }
        CommandKind::Update {
            post_id,
            user_id,
            post,
        } => {
            let mut p = owned_live(cur, &city, *post_id, *user_id)?;
            post.validate().map_err(|_| "invalid post")?;
            // An edit keeps listed_at: editing is not a way to the top; and
            // the photo count, which only the photos change.
            p.fields = PostFields {
                image_count: p.fields.image_count,
                ..post.clone()
            };
            p.updated_at = now;
            Ok(Some(changed(c, cur, out, p)))
        }
        CommandKind::Renew { post_id, user_id } => {
            let mut p = owned(cur, &city, *post_id, *user_id)?;
            if !matches!(p.status, PostStatus::Live | PostStatus::Expired) {
                return Err("the post is deleted or hidden".into());
            }
            // The api checks this too for a quick answer, but only the fold
            // sees the post as it is when the renewal applies (two renewals
            // sent at once both pass the api's check).
            let from = renew_allowed_from(&p);
            if now < from {
                return Err(format!(
                    "renewed too early: renewal is allowed from {}",
                    from.to_rfc3339_opts(SecondsFormat::Secs, true)
                )
                .into());
            }
            p.status = PostStatus::Live;
            p.expires_at = now + POST_LIFETIME;
            p.listed_at = now;
            p.updated_at = now;
            Ok(Some(changed(c, cur, out, p)))
        }
        CommandKind::Delete { post_id, user_id } => {
            let p = owned(cur, &city, *post_id, *user_id)?;
            if p.status == PostStatus::Deleted {
                return Ok(None);
            }
            Ok(Some(gone(c, cur, out, p, GoneReason::Deleted)))
        }
        CommandKind::Hide { post_id, .. } => {
            let p = existing(cur, &city, *post_id)?;
            if p.status != PostStatus::Live {
                return Ok(None);
            }
            Ok(Some(gone(c, cur, out, p, GoneReason::Hidden)))
        }
        CommandKind::Report {
            post_id,
            reporter_id,
            reason,
        } => {
            let p = existing(cur, &city, *post_id)?;
            let reporters = cur.reporters.entry((city.clone(), *post_id)).or_default();
            if !reporters.insert(*reporter_id) {
                return Ok(None);
            }
            out.reports.push(NewReport {
                city: city.clone(),
                post_id: *post_id,
                reporter_id: *reporter_id,
                reason: reason.clone(),
                created_at: now,
            });
            if reporters.len() >= hide_after && p.status == PostStatus::Live {
                return Ok(Some(gone(c, cur, out, p, GoneReason::Hidden)));
            }
            Ok(None)
        }
        CommandKind::DeleteUser { user_id } => {
            let mut theirs: Vec<Post> = cur
                .posts
                .values()
                .filter(|p| p.city == city && p.user_id == *user_id)
                .filter(|p| p.status != PostStatus::Deleted)
                .cloned()
                .collect();
            theirs.sort_by_key(|p| p.id);
            for p in theirs {
                gone(c, cur, out, p, GoneReason::UserDeleted);
            }
            Ok(None)
        }
        CommandKind::AddPhotos {
            post_id,
            user_id,
            photos,
        } => {
            let mut p = owned_live(cur, &city, *post_id, *user_id)?;
            if photos.is_empty() {
                return Err("no photos".into());
            }
            if p.photos.len() + photos.len() > MAX_PHOTOS {
                return Err("too many photos".into());
            }
            for photo in photos {
                out.images.push(NewImage {
                    city: city.clone(),
                    post_id: *post_id,
                    // At most MAX_PHOTOS (10), checked above.
                    slot: i16::try_from(p.photos.len()).unwrap_or(i16::MAX),
                    photo: photo.clone(),
                    created_at: now,
                });
                p.photos.push(photo.clone());
            }
            p.fields.image_count = i16::try_from(p.photos.len()).unwrap_or(i16::MAX);
            p.updated_at = now;
            Ok(Some(changed(c, cur, out, p)))
        }
        CommandKind::Expire { post_id, as_of } => {
            // Nothing to do is not a rejection (no dead letter): the post was
            // renewed after the sweep saw it, is gone already, or was
            // archived meanwhile.
            match cur.posts.get(&(city.clone(), *post_id)) {
                Some(p) if p.status == PostStatus::Live && p.expires_at <= *as_of => {
                    let p = p.clone();
                    Ok(Some(gone(c, cur, out, p, GoneReason::Expired)))
                }
                _ => Ok(None),
            }
        }
    }
}

fn existing(cur: &Current, city: &str, id: Id) -> Result<Post, &'static str> {
    cur.posts
        .get(&(city.to_string(), id))
        .cloned()
        .ok_or("no such post")
}

fn owned(cur: &Current, city: &str, id: Id, user: Id) -> Result<Post, &'static str> {
    let p = existing(cur, city, id)?;
    if p.user_id != user {
        return Err("not the poster's post");
    }
    Ok(p)
}

fn owned_live(cur: &Current, city: &str, id: Id, user: Id) -> Result<Post, &'static str> {
    let p = owned(cur, city, id, user)?;
    if p.status != PostStatus::Live {
        return Err("the post is not live");
    }
    Ok(p)
}

/// Records a visible change: version bumped, event, new current state.
fn changed(c: &Command, cur: &mut Current, out: &mut Folded, mut p: Post) -> i64 {
    p.version += if cur.posts.contains_key(&(p.city.clone(), p.id)) {
        1
    } else {
        0
    };
    let v = p.version;
    out.events.push(Event::PostChanged {
        command_id: c.id,
        request_id: c.request_id.clone(),
        post: Box::new(p.clone()),
    });
    remember(cur, out, p);
    v
}

/// Records a post leaving view. Deleted content is erased (the row stays as
/// a tombstone with its version); hidden content is kept for moderators.
fn gone(c: &Command, cur: &mut Current, out: &mut Folded, mut p: Post, why: GoneReason) -> i64 {
    p.version += 1;
    p.updated_at = c.created_at;
    p.status = match why {
        GoneReason::Hidden => PostStatus::Hidden,
        GoneReason::Expired => PostStatus::Expired,
        GoneReason::Deleted | GoneReason::UserDeleted => PostStatus::Deleted,
    };
    if p.status == PostStatus::Deleted {
        p.fields = PostFields {
            category: p.fields.category.clone(),
            title: String::new(),
            description: String::new(),
            price: None,
            location: None,
            image_count: 0,
        };
        // Every time, not only when photos were read: a row left would
        // keep a deleted post's photo listed.
        p.photos.clear();
        out.cleared_images.push((p.city.clone(), p.id));
    }
    out.events.push(Event::PostGone {
        command_id: c.id,
        request_id: c.request_id.clone(),
        city: p.city.clone(),
        post_id: p.id,
        version: p.version,
        reason: why,
    });
    let v = p.version;
    remember(cur, out, p);
    v
}

fn remember(cur: &mut Current, out: &mut Folded, p: Post) {
    let key = (p.city.clone(), p.id);
    cur.posts.insert(key.clone(), p.clone());
    out.changed.insert(key, p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn fields(title: &str) -> PostFields {
        PostFields {
            category: "for-sale".into(),
            title: title.into(),
            description: "desc".into(),
            price: Some(10),
            location: None,
            image_count: 0,
        }
    }

    fn cmd(id: i64, kind: CommandKind) -> Command {
        Command {
            id: Id(id),
            city: "boston".into(),
            created_at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(id),
            epoch: 1,
            request_id: None,
            kind,
        }
    }

    fn create(id: i64, post: i64, user: i64) -> Command {
        cmd(
            id,
            CommandKind::Create {
                post_id: Id(post),
                user_id: Id(user),
                post: fields("bike"),
            },
        )
    }

    #[test]
    fn create_then_update_in_one_batch_gives_version_two_and_two_events() {
        let batch = [
            create(1, 100, 7),
            cmd(
                2,
                CommandKind::Update {
                    post_id: Id(100),
                    user_id: Id(7),
                    post: fields("red bike"),
                },
            ),
        ];
        let f = fold(&batch, Current::default(), 3);
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!((p.version, p.fields.title.as_str()), (2, "red bike"));
        assert_eq!(f.events.len(), 2);
        assert_eq!(f.outcomes[1].2, Outcome::Applied { version: Some(2) });
    }

    #[test]
    fn someone_elses_post_is_rejected_and_unchanged() {
        let f = fold(&[create(1, 100, 7)], Current::default(), 3);
        let cur = Current {
            posts: f.changed,
            ..Current::default()
        };
        let f = fold(
            &[cmd(
                2,
                CommandKind::Delete {
                    post_id: Id(100),
                    user_id: Id(8),
                },
            )],
            cur,
            3,
        );
        assert!(f.changed.is_empty() && f.events.is_empty());
        assert!(matches!(f.outcomes[0].2, Outcome::Rejected(_)));
    }

    #[test]
    fn distinct_reporters_hide_a_post_at_the_threshold() {
        let mut batch = vec![create(1, 100, 7)];
        for (i, reporter) in [50, 50, 51, 52].into_iter().enumerate() {
            batch.push(cmd(
                10 + i as i64,
                CommandKind::Report {
                    post_id: Id(100),
                    reporter_id: Id(reporter),
                    reason: "spam".into(),
                },
            ));
        }
        let f = fold(&batch, Current::default(), 3);
        assert_eq!(f.reports.len(), 3, "the same reporter counts once");
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!(p.status, PostStatus::Hidden);
        assert!(matches!(
            f.events.last(),
            Some(Event::PostGone {
                reason: GoneReason::Hidden,
                ..
            })
        ));
    }

    fn expire(id: i64, post: i64, as_of: DateTime<Utc>) -> Command {
        cmd(
            id,
            CommandKind::Expire {
                post_id: Id(post),
                as_of,
            },
        )
    }

    #[test]
    fn expire_ends_a_live_post_past_its_lifetime_with_a_gone_event() {
        let created = create(1, 100, 7);
        let end = created.created_at + POST_LIFETIME;
        let f = fold(&[created, expire(2, 100, end)], Current::default(), 3);
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!((p.status, p.version), (PostStatus::Expired, 2));
        assert!(!p.fields.title.is_empty(), "an expired post keeps its text");
        assert!(matches!(
            f.events.last(),
            Some(Event::PostGone {
                reason: GoneReason::Expired,
                version: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_renewal_applied_before_the_expiry_wins() {
        let created = create(1, 100, 7);
        // The sweep saw the post expired as of its end of life...
        let end = created.created_at + POST_LIFETIME;
        let renew = Command {
            created_at: end,
            ..cmd(
                2,
                CommandKind::Renew {
                    post_id: Id(100),
                    user_id: Id(7),
                },
            )
        };
        // ...but the renewal reached the topic first.
        let f = fold(
            &[created, renew, expire(3, 100, end)],
            Current::default(),
            3,
        );
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!((p.status, p.version), (PostStatus::Live, 2));
        assert_eq!(f.outcomes[2].2, Outcome::Applied { version: None });
    }

    #[test]
    fn expiring_too_early_a_gone_or_a_missing_post_changes_nothing() {
        let created = create(1, 100, 7);
        let early = created.created_at + POST_LIFETIME - chrono::Duration::seconds(1);
        let f = fold(
            &[created, expire(2, 100, early), expire(3, 999, early)],
            Current::default(),
            3,
        );
        assert_eq!(f.events.len(), 1, "only the create's");
        assert!(
            f.outcomes[1..]
                .iter()
                .all(|(_, _, o)| *o == Outcome::Applied { version: None })
        );
        let cur = Current {
            posts: f.changed,
            ..Current::default()
        };
        let late = DateTime::<Utc>::MAX_UTC;
        let f = fold(&[expire(4, 100, late), expire(5, 100, late)], cur, 3);
        assert_eq!(
            f.events.len(),
            1,
            "a second expiry of the same post is a no-op"
        );
    }

    fn renew_at(id: i64, post: i64, at: DateTime<Utc>) -> Command {
        Command {
            created_at: at,
            ..cmd(
                id,
                CommandKind::Renew {
                    post_id: Id(post),
                    user_id: Id(7),
                },
            )
        }
    }

    #[test]
    fn renewal_moves_listed_at_and_an_edit_does_not() {
        let created = create(1, 100, 7);
        let t0 = created.created_at;
        let edit = Command {
            created_at: t0 + chrono::Duration::days(3),
            ..cmd(
                2,
                CommandKind::Update {
                    post_id: Id(100),
                    user_id: Id(7),
                    post: fields("red bike"),
                },
            )
        };
        let f = fold(&[created, edit], Current::default(), 3);
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!(p.listed_at, t0, "an edit keeps the listing position");
        assert_eq!(p.updated_at, t0 + chrono::Duration::days(3));

        let cur = Current {
            posts: f.changed,
            ..Current::default()
        };
        let later = t0 + chrono::Duration::days(8);
        let f = fold(&[renew_at(3, 100, later)], cur, 3);
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!((p.listed_at, p.expires_at), (later, later + POST_LIFETIME));
        assert_eq!(p.created_at, t0);
        assert!(matches!(
            &f.events[0],
            Event::PostChanged { post, .. } if post.listed_at == later
        ));
    }

    #[test]
    fn a_renewal_inside_48_hours_is_rejected_naming_when() {
        let created = create(1, 100, 7);
        let t0 = created.created_at;
        let allowed = t0 + chrono::Duration::hours(48);
        let f = fold(
            &[
                created,
                renew_at(2, 100, allowed - chrono::Duration::seconds(1)),
                renew_at(3, 100, allowed),
                // A second renewal right after the first: 48 h from it.
                renew_at(4, 100, allowed + chrono::Duration::hours(1)),
            ],
            Current::default(),
            3,
        );
        let Outcome::Rejected(why) = &f.outcomes[1].2 else {
            panic!("{:?}", f.outcomes[1])
        };
        assert!(why.starts_with("renewed too early"), "{why}");
        assert!(why.contains("1970-01-03T00:00:01Z"), "{why}");
        assert_eq!(f.outcomes[2].2, Outcome::Applied { version: Some(2) });
        let Outcome::Rejected(why) = &f.outcomes[3].2 else {
            panic!("{:?}", f.outcomes[3])
        };
        assert!(why.contains("1970-01-05T00:00:01Z"), "{why}");
    }

    #[test]
    fn delete_user_erases_every_post_of_the_user() {
        let f = fold(
            &[create(1, 100, 7), create(2, 101, 7), create(3, 102, 8)],
            Current::default(),
            3,
        );
        let cur = Current {
            posts: f.changed,
            ..Current::default()
        };
        let f = fold(
            &[cmd(4, CommandKind::DeleteUser { user_id: Id(7) })],
            cur,
            3,
        );
        assert_eq!(f.changed.len(), 2);
        assert!(f.changed.values().all(|p| p.status == PostStatus::Deleted
            && p.fields.title.is_empty()
            && p.version == 2));
    }

    fn add_photos(id: i64, post: i64, user: i64, photos: &[i64]) -> Command {
        cmd(
            id,
            CommandKind::AddPhotos {
                post_id: Id(post),
                user_id: Id(user),
                photos: photos
                    .iter()
                    .map(|&p| Photo {
                        id: Id(p),
                        width: 1200,
                        height: 900,
                    })
                    .collect(),
            },
        )
    }

    #[test]
    fn the_photo_count_comes_from_the_photos_not_from_the_client() {
        let mut claims_photos = create(1, 100, 7);
        if let CommandKind::Create { post, .. } = &mut claims_photos.kind {
            post.image_count = 4;
        }
        let mut edit = fields("red bike");
        edit.image_count = 9;
        let f = fold(
            &[
                claims_photos,
                add_photos(2, 100, 7, &[500, 501]),
                cmd(
                    3,
                    CommandKind::Update {
                        post_id: Id(100),
                        user_id: Id(7),
                        post: edit,
                    },
                ),
            ],
            Current::default(),
            3,
        );
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!(p.fields.image_count, 2);
        assert_eq!(
            p.photos.iter().map(|p| p.id).collect::<Vec<_>>(),
            [Id(500), Id(501)]
        );
        let slots: Vec<_> = f.images.iter().map(|i| (i.slot, i.photo.id)).collect();
        assert_eq!(slots, [(0, Id(500)), (1, Id(501))]);
        // The publisher renders the gallery from the event.
        let Event::PostChanged { post, .. } = &f.events[2] else {
            panic!("{:?}", f.events[2])
        };
        assert_eq!(post.photos.len(), 2);
    }

    #[test]
    fn an_eleventh_photo_or_a_stranger_s_is_rejected_whole() {
        let ten: Vec<i64> = (500..508).collect();
        let f = fold(
            &[
                create(1, 100, 7),
                add_photos(2, 100, 7, &ten),
                // 8 + 3 > 10: none of the three is added.
                add_photos(3, 100, 7, &[600, 601, 602]),
                add_photos(4, 100, 8, &[700]),
                add_photos(5, 100, 7, &[]),
                add_photos(6, 100, 7, &[800, 801]),
            ],
            Current::default(),
            3,
        );
        let outcome = |i: usize| f.outcomes[i].2.clone();
        assert_eq!(outcome(2), Outcome::Rejected("too many photos".into()));
        assert_eq!(
            outcome(3),
            Outcome::Rejected("not the poster's post".into())
        );
        assert_eq!(outcome(4), Outcome::Rejected("no photos".into()));
        assert_eq!(outcome(5), Outcome::Applied { version: Some(3) });
        let p = &f.changed[&("boston".to_string(), Id(100))];
        assert_eq!((p.photos.len(), p.fields.image_count), (10, 10));
        assert_eq!(f.images.len(), 10);
        assert_eq!(f.images.last().map(|i| i.slot), Some(9));
    }

    #[test]
    fn a_deleted_post_loses_its_photos_and_a_hidden_one_keeps_them() {
        let f = fold(
            &[
                create(1, 100, 7),
                add_photos(2, 100, 7, &[500]),
                create(3, 101, 7),
                add_photos(4, 101, 7, &[501]),
                cmd(
                    5,
                    CommandKind::Hide {
                        post_id: Id(101),
                        reason: "spam".into(),
                    },
                ),
                cmd(
                    6,
                    CommandKind::Delete {
                        post_id: Id(100),
                        user_id: Id(7),
                    },
                ),
            ],
            Current::default(),
            3,
        );
        let deleted = &f.changed[&("boston".to_string(), Id(100))];
        assert!(deleted.photos.is_empty() && deleted.fields.image_count == 0);
        assert_eq!(f.cleared_images, [("boston".to_string(), Id(100))]);
        let hidden = &f.changed[&("boston".to_string(), Id(101))];
        assert_eq!(hidden.photos.len(), 1);
    }
}
