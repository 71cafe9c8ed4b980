//! `secrets`: named values from the call context, only those the manifest lists.

use crate::bindings::imports::payloom::plugin::secrets::{self, Error};
use crate::state::CallState;

impl secrets::Host for CallState {
    fn get(&mut self, name: String) -> Result<String, Error> {
        if !self.plugin.manifest.capabilities.secrets.contains(&name) {
            return Err(Error::NotAllowed(name));
        }
        self.ctx
            .secrets
            .get(&name)
            .cloned()
            .ok_or(Error::NotFound(name))
    }
}
