//! `clock`: the call's time (fixed for deterministic plugins).

use crate::bindings::imports::payloom::plugin::clock;
use crate::state::CallState;

impl clock::Host for CallState {
    fn now_ms(&mut self) -> i64 {
        CallState::now_ms(self)
    }
}
