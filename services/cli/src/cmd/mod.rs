//! One module per subcommand: its arguments and what it does.

pub mod analyst;
pub mod audit;
pub mod bench;
pub mod data_keys;
pub mod migrate;
pub mod replay;
pub mod serve;
pub mod tenant;
pub mod token;
