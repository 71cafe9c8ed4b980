//! `lists`: read-only membership lists (blocklists), behind a trait the risk service implements.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::bindings::imports::payloom::plugin::lists;
use crate::state::CallState;

/// Where lists live (in memory here; a database or Redis in the services).
#[async_trait::async_trait]
pub trait Lists: Send + Sync {
    /// Whether `value` is on list `name`.
    async fn contains(&self, name: &str, value: &str) -> bool;
}

/// Lists held in process memory.
#[derive(Default)]
pub struct MemoryLists {
    lists: RwLock<HashMap<String, HashSet<String>>>,
}

impl MemoryLists {
    /// Adds `value` to list `name`.
    pub fn add(&self, name: &str, value: &str) {
        let mut lists = self.lists.write().expect("lists lock");
        lists
            .entry(name.to_owned())
            .or_default()
            .insert(value.to_owned());
    }

    /// Removes `value` from list `name`.
    pub fn remove(&self, name: &str, value: &str) {
        let mut lists = self.lists.write().expect("lists lock");
        if let Some(list) = lists.get_mut(name) {
            list.remove(value);
        }
    }
}

#[async_trait::async_trait]
impl Lists for MemoryLists {
    async fn contains(&self, name: &str, value: &str) -> bool {
        let lists = self.lists.read().expect("lists lock");
        lists.get(name).is_some_and(|list| list.contains(value))
    }
}

impl lists::Host for CallState {
    async fn contains(&mut self, name: String, value: String) -> bool {
        self.services.lists.contains(&name, &value).await
    }
}
