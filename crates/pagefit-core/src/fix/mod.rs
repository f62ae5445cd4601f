//! `pagefit fix`, as pure functions: the rewrite plan for a strategy
//! ([`strategies::plan_rewrite`]), the layout it rests on, rebase's address
//! patches per architecture, and the proof that an output loads at P as the
//! input did at 4K ([`proof`]), which shares no code with the planner;
//! [`steps`] strings them together and [`write`] writes a plan's output.

pub mod headers;
pub mod layout;
pub mod packed_relocations;
pub mod plan;
pub mod proof;
mod rebase;
pub mod report;
pub mod steps;
pub mod strategies;
pub(crate) mod words;
pub mod write;
