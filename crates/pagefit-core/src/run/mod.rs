//! What `pagefit run` needs that is pure: how it maps an executable at any
//! page size ([`plan`]), the initial stack ([`stack`]) and `$ORIGIN`
//! expansion ([`origin`]).

pub mod origin;
pub mod plan;
pub mod stack;
