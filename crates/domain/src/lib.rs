//! Pactum's domain: agreement amendments as immutable events, and the rules every amendment obeys.
//!
//! This crate is pure: no I/O, no clock, no storage format. It holds
//! - validated identifiers ([`Slug`], [`TermKey`]): a value of these types that exists is valid;
//! - typed term values ([`Value`]);
//! - the input of an append ([`Draft`]) and the recorded event ([`Amendment`]);
//! - the interface every storage backend implements ([`LedgerStore`]), the query index it may
//!   offer ([`HistoryIndex`]; [`MemoryIndex`] holds one in memory) and the source of ids and
//!   timestamps it is given ([`Stamper`]).
//!
//! It is not the place for parsing files (pactum-format), replay (pactum-projection) or storage
//! (pactum-store).

mod amendment;
mod ident;
pub mod limits;
mod memory_index;
pub mod stamp;
mod store;
mod value;
mod view;

pub use amendment::{Amendment, Change, Draft, DraftError, DraftFields, Hash, Opening, Version};
pub use ident::{IdentError, Slug, TermKey};
pub use memory_index::{IndexedFacts, Infallibly, MemoryIndex};
pub use stamp::{Stamper, StepStamper};
pub use store::{
    AgreementHead, AppendRequest, BoxedIndex, ChainCheck, ChainReport, Histories, HistoryIndex,
    HistoryVisitor, ImportFailure, LedgerStore, Placement, Rejected, ShortHistoryVisitor,
    StoreFailure, VerifyFinding, Views,
};
pub use value::{Currency, Decimal, Money, Value, ValueError};
pub use view::{AmendmentView, ChangeView};
