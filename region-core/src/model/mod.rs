//! Ids, posts, commands and events.

pub mod account;
pub mod command;
pub mod event;
pub mod id;
pub mod idgen;
pub mod photo;
pub mod post;
pub mod request_id;

pub use account::{ACCOUNT_KEY, AccountCommand, AccountKind};
pub use command::{Command, CommandKind};
pub use event::Event;
pub use id::Id;
pub use idgen::IdGenerator;
pub use photo::Photo;
pub use post::{Post, PostFields, PostStatus};
pub use request_id::RequestId;
