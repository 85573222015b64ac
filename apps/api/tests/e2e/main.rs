//! End to end over HTTP, against SQLite and against Postgres: a user's journey, the IDOR matrix,
//! the permission matrix, holds, idempotency, and every refusal a client can provoke, each a 4xx
//! problem with its code and never a 5xx (the client helper asserts that on every call). The
//! scenarios run once per database (here); each module holds a group of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod holds;
mod journey;
mod operators;
mod permissions;
mod refusals;

use holds::holds;
use journey::{idor, journey};
use permissions::permissions;
use refusals::bad_requests;

use common::{Database, PASSWORD, PIN, Server, new_key};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The scenarios of `journey`, `permissions`, `refusals` and `holds`, once per database.
macro_rules! on_database {
    ($module:ident, $db:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_users_journey() {
                journey($db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn another_users_wallet_is_not_found_on_every_route() {
                idor($db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn admins_administer_and_users_do_not() {
                permissions($db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_requests_are_problems_with_codes() {
                bad_requests($db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn holds_are_captured_voided_and_hidden_from_others() {
                holds($db).await;
            }
        }
    };
}

on_database!(sqlite, Database::Sqlite);
on_database!(postgres, Database::Postgres);
