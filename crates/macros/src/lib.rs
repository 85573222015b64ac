//! Declarative macros several crates share, so each writes the pattern once instead of by hand:
//!
//! - [`debug_non_exhaustive!`]: a `Debug` impl that shows only the named fields (or values) and
//!   ends in `..`, the way types holding keys, connections or secrets redact the rest;
//! - [`guarded_subject!`] and [`contract_cases!`]: the scaffolding of the ports' contract suites
//!   (each crate's `testkit`): a port under test bundled with what must outlive it, and one
//!   `#[tokio::test]` per case. A suite's own macro (`audit_log_contract_tests!` and the like)
//!   keeps its case list and calls [`contract_cases!`] through its crate's `testkit`, so the crates
//!   running a suite need no dependency on this one.
//!
//! No dependencies, no I/O.

/// Writes `impl std::fmt::Debug` for a struct as
/// `f.debug_struct("Name").field(..)….finish_non_exhaustive()`: the output is `Name { a: …, .. }`.
///
/// `self` is passed in first, so that field values may be expressions over it. A field named
/// alone shows `self.field`; `field: expr` shows the value of `expr`. A type with a lifetime is
/// written `Name<'_>`:
///
/// ```
/// struct Key { kid: String, secret: Vec<u8> }
/// coffer_macros::debug_non_exhaustive!(self => Key { kid, secret_len: self.secret.len() });
///
/// let key = Key { kid: "k1".into(), secret: vec![1, 2, 3] };
/// assert_eq!(format!("{key:?}"), r#"Key { kid: "k1", secret_len: 3, .. }"#);
/// ```
#[macro_export]
macro_rules! debug_non_exhaustive {
    ($this:ident => $ty:ident $(<$lt:lifetime>)? { $($field:ident $(: $value:expr)?),* $(,)? }) => {
        impl ::std::fmt::Debug for $ty $(<$lt>)? {
            fn fmt(&$this, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(
                        stringify!($field),
                        $crate::debug_non_exhaustive!(@value $this, $field $(, $value)?),
                    ))*
                    .finish_non_exhaustive()
            }
        }
    };
    (@value $this:ident, $field:ident) => {
        &$this.$field
    };
    (@value $this:ident, $field:ident, $value:expr) => {
        &$value
    };
}

/// Defines a contract suite's subject: a port under test (`Arc<dyn Port>`) plus whatever must
/// live as long as it (a temp dir, a database, a server handle), with `new(port, guard)` and a
/// `Debug` that shows the port only.
///
/// ```
/// trait Store: std::fmt::Debug + Send + Sync {}
/// coffer_macros::guarded_subject! {
///     /// A store under test.
///     pub struct Subject {
///         /// The store.
///         pub store: dyn Store,
///     }
/// }
/// ```
#[macro_export]
macro_rules! guarded_subject {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(#[$field_meta:meta])*
            pub $field:ident: $port:ty $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $(#[$field_meta])*
            pub $field: ::std::sync::Arc<$port>,
            _guard: ::std::boxed::Box<dyn ::std::any::Any + Send + Sync>,
        }

        impl $name {
            /// Bundles the port with what keeps its backing store alive.
            pub fn new(
                $field: ::std::sync::Arc<$port>,
                guard: impl ::std::any::Any + Send + Sync,
            ) -> Self {
                Self {
                    $field,
                    _guard: ::std::boxed::Box::new(guard),
                }
            }
        }

        $crate::debug_non_exhaustive!(self => $name { $field });
    };
}

/// Expands to one `#[tokio::test]` (multi-threaded, on `$threads` workers) per case: each calls
/// `$factory` (no arguments, a future of the subject), binds the subject to `$subject` and awaits
/// `$($module)::*::$case($arg)`.
///
/// A suite's macro calls it with its case list, its testkit's path and how a case takes the
/// subject:
///
/// ```text
/// $crate::testkit::contract_cases!(threads = 2, $factory, |subject| $crate::testkit(&subject);
///     first_case,
///     second_case,
/// );
/// ```
#[macro_export]
macro_rules! contract_cases {
    (
        threads = $threads:literal, $factory:expr, |$subject:ident| $($module:tt)::+ ($arg:expr);
        $($case:ident),+ $(,)?
    ) => {
        $crate::contract_cases!(
            @each [$threads, $factory, $subject, $arg, $($module)::+] $($case)+
        );
    };
    (
        @each [$threads:literal, $factory:expr, $subject:ident, $arg:expr, $($module:tt)::+]
        $case:ident $($rest:ident)*
    ) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $case() {
            let $subject = ($factory)().await;
            $($module)::+::$case($arg).await;
        }

        $crate::contract_cases!(
            @each [$threads, $factory, $subject, $arg, $($module)::+] $($rest)*
        );
    };
    (@each [$($suite:tt)*]) => {};
}

/// The start of a bench's `main` (a `harness = false` bench): whether this run measures
/// (`cargo bench` passes `--bench`) or is a smoke run (`cargo test --benches`; said on stdout as
/// `<name> bench: smoke run …`), and a multi-threaded Tokio runtime to run it on. The bench's
/// crate provides `tokio`.
///
/// ```text
/// let (full, rt) = coffer_macros::bench_start!("ledger");
/// rt.block_on(async { /* … */ });
/// ```
#[macro_export]
macro_rules! bench_start {
    ($name:literal) => {{
        let full = ::std::env::args().any(|a| a == "--bench");
        if !full {
            println!(concat!(
                $name,
                " bench: smoke run (not --bench), figures below are not measurements"
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        (full, rt)
    }};
}
