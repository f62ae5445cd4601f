//! `pagefit fix`, as pure functions: the rewrite plan for a strategy
//! ([`strategies::plan_rewrite`]), the layout it rests on, rebase's address
//! patches per architecture, and the proof that an output loads at P as the
//! input did at 4K ([`proof`]), which shares no code with the planner.

pub mod headers;
pub mod layout;
pub mod plan;
pub mod proof;
mod rebase;
pub mod report;
pub mod strategies;
pub(crate) mod words;
