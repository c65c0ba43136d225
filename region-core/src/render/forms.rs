//! The pages that are forms: new and edit post, sign-up and log-in,
//! log-out, report, renew. Each carries its CSRF token and, after a try
//! that failed validation, what was typed and an error per field.

use askama::Template;

use super::{Choice, Chrome, category_choices, render};
use crate::model::post::FieldError;
use crate::model::{Post, PostStatus};

/// One invalid field, as a form shows it.
#[derive(Debug, Clone)]
pub struct ShownError {
    /// The field's name (and the id of its input).
    pub field: String,
    /// The field's label.
    pub label: String,
    /// What is wrong.
    pub problem: String,
}

fn shown(errors: &[FieldError], label: fn(&str) -> &'static str) -> Vec<ShownError> {
    errors
        .iter()
        .map(|e| ShownError {
            field: e.field.to_string(),
            label: label(e.field).to_string(),
            problem: e.problem.clone(),
        })
        .collect()
}

/// A post's fields as typed into the form (kept on a 422).
#[derive(Debug, Clone, Default)]
pub struct PostValues {
    /// Title.
    pub title: String,
    /// Category slug.
    pub category: String,
    /// Price as typed.
    pub price: String,
    /// Place.
    pub location: String,
    /// Description.
    pub description: String,
}

impl PostValues {
    /// The values of a stored post (the edit form).
    pub fn of(p: &Post) -> PostValues {
        PostValues {
            title: p.fields.title.clone(),
            category: p.fields.category.clone(),
            price: p.fields.price.map(|v| v.to_string()).unwrap_or_default(),
            location: p.fields.location.clone().unwrap_or_default(),
            description: p.fields.description.clone(),
        }
    }
}

fn post_field_label(field: &str) -> &'static str {
    match field {
        "title" => "Title",
        "category" => "Category",
        "price" => "Price",
        "location" => "Place",
        "description" => "Description",
        "image_count" => "Photos",
        _ => "Form",
    }
}

#[derive(Template)]
#[template(path = "post_form.html")]
struct PostFormPage<'a> {
    chrome: Chrome,
    heading: &'a str,
    action: String,
    submit: &'a str,
    csrf: &'a str,
    idempotency_key: &'a str,
    currency: &'static str,
    v: &'a PostValues,
    categories: Vec<Choice>,
    summary: &'a str,
    errors: Vec<ShownError>,
}

impl PostFormPage<'_> {
    fn error_of(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.problem.as_str())
    }
}

/// The new-post form (`editing`: none) or the edit form of post
/// `editing`, with `values` and the `errors` of a previous try. `key` is
/// the form's `Idempotency-Key` (a browser's form cannot send the header),
/// new for each form shown, so that a form sent twice writes once.
pub fn post_form(
    chrome: Chrome,
    editing: Option<&str>,
    csrf: &str,
    key: &str,
    values: &PostValues,
    errors: &[FieldError],
) -> String {
    let (heading, action, submit) = match editing {
        None => ("New post", "/post".to_string(), "Publish"),
        Some(id) => ("Edit post", format!("/post/{id}/edit"), "Save changes"),
    };
    let current = (!values.category.is_empty()).then_some(values.category.as_str());
    render(&PostFormPage {
        currency: chrome.locale.currency,
        chrome,
        heading,
        action,
        submit,
        csrf,
        idempotency_key: key,
        v: values,
        categories: category_choices(current),
        summary: "The post was not saved. Please correct these fields:",
        errors: shown(errors, post_field_label),
    })
}

/// Sign-up or log-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountForm {
    /// `/signup`.
    SignUp,
    /// `/login`.
    LogIn,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    chrome: Chrome,
    heading: &'static str,
    action: &'static str,
    csrf: &'a str,
    email: &'a str,
    password_autocomplete: &'static str,
    other_prompt: &'static str,
    other_href: &'static str,
    other_label: &'static str,
    summary: &'static str,
    errors: Vec<ShownError>,
}

impl AccountPage<'_> {
    fn error_of(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.problem.as_str())
    }
}

fn account_field_label(field: &str) -> &'static str {
    match field {
        "email" => "E-mail",
        "password" => "Password",
        _ => "Form",
    }
}

/// The sign-up or log-in form with its CSRF token; `email` and `errors`
/// from a previous try (the password is never sent back).
pub fn account_form(
    chrome: Chrome,
    which: AccountForm,
    csrf: &str,
    email: &str,
    errors: &[FieldError],
) -> String {
    let page = match which {
        AccountForm::SignUp => AccountPage {
            chrome,
            heading: "Sign up",
            action: "/signup",
            csrf,
            email,
            password_autocomplete: "new-password",
            other_prompt: "Have an account?",
            other_href: "/login",
            other_label: "Log in",
            summary: "The account was not created. Please correct these fields:",
            errors: shown(errors, account_field_label),
        },
        AccountForm::LogIn => AccountPage {
            chrome,
            heading: "Log in",
            action: "/login",
            csrf,
            email,
            password_autocomplete: "current-password",
            other_prompt: "No account yet?",
            other_href: "/signup",
            other_label: "Sign up",
            summary: "Please correct these fields:",
            errors: shown(errors, account_field_label),
        },
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    chrome: Chrome,
    csrf: Option<&'a str>,
}

/// The log-out page: one button that posts `POST /logout` with the
/// session's CSRF token (none: not logged in).
pub fn logout_page(chrome: Chrome, csrf: Option<&str>) -> String {
    render(&LogoutPage { chrome, csrf })
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    chrome: Chrome,
    post_id: String,
    title: &'a str,
    csrf: &'a str,
}

/// The report form of one post, per visitor (it carries the CSRF token the
/// shared post page cannot).
pub fn report_form(chrome: Chrome, p: &Post, csrf: &str) -> String {
    render(&ReportPage {
        chrome,
        post_id: p.id.to_string(),
        title: &p.fields.title,
        csrf,
    })
}

#[derive(Template)]
#[template(path = "renew.html")]
struct RenewPage<'a> {
    chrome: Chrome,
    id: String,
    title: &'a str,
    state: &'static str,
    expires: String,
    csrf: &'a str,
}

/// The page a renewal reminder links to: the post's title and end of life,
/// and one button that posts the renewal with the session's CSRF token (a
/// link alone must not change anything: mail scanners follow links).
pub fn renew_form(chrome: Chrome, p: &Post, csrf: &str) -> String {
    let expires = chrome.locale.date_time(p.expires_at);
    render(&RenewPage {
        id: p.id.to_string(),
        title: &p.fields.title,
        state: if p.status == PostStatus::Expired {
            "Expired"
        } else {
            "Expires"
        },
        expires,
        csrf,
        chrome,
    })
}
