//! Load prediction: the loader models, the planner that replays them at any
//! page size, the memory image it compares, the findings that explain a
//! difference, and `check`, which runs it all for one file.

pub mod check;
pub mod effect;
pub mod finding;
pub mod input;
pub mod memory;
pub mod model;
pub mod plan;
