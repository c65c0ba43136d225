//! The api's read caches, each named by what it holds: `pages`, the listing
//! and search pages shared through the region's LRU Redis; `hot`, the hot
//! post views and listing pages kept in this process in front of it.

pub mod hot;
pub mod pages;
