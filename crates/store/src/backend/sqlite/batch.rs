//! Group commit for the engine's two hot statements: recording intents and their outcomes.
//!
//! Every statement is a round trip to the connection's thread and a commit, and the engine
//! makes two per resource, from many tasks at once. So a call does not wait for its turn on the
//! connection with its statement in hand: it puts its row in a queue and waits for either its
//! answer or its turn. The caller whose turn comes takes every row queued by then and writes
//! them in one statement (up to [`MAX_BATCH`] rows; then the next); every caller gets its own
//! answer once that statement has committed, so nothing returns before its row is durable, and
//! an intent is still recorded before its provider is called.
//!
//! What each caller sees is what one statement of its own would have done:
//! - a batch is one statement, so it commits or changes nothing; if it fails, its rows are
//!   tried again one by one, so that each caller gets its own answer and its own error;
//! - finishing checks each row as [`FINISH_INTENT`](super::FINISH_INTENT) does (the operator
//!   must own the intent and it must be open), and one statement never finishes an intent
//!   twice: a second outcome for the same intent waits for the next statement, and finds it
//!   finished;
//! - the statement runs in a task of its own (the connection goes with it), so a caller that
//!   goes away cannot cut short the others' rows; a caller that goes away before its row was
//!   taken takes it back, and nothing is written for it.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::types::Json;
use tokio::sync::oneshot;

use super::{SqliteBackend, Turn, failed, insert_intent, update_intent};
use crate::backend::{FinishIntentRow, NewIntentRow};
use crate::error::{Error, Result};

/// Rows written by one statement at most (7 parameters each).
pub(super) const MAX_BATCH: usize = 32;

/// What the two statements do, for errors.
pub(super) const RECORDING: &str = "recording an intent";
pub(super) const FINISHING: &str = "recording an intent's outcome";

/// Rows waiting for a turn on the connection, with where each one's answer goes.
#[derive(Debug)]
pub(super) struct Batch<T, R> {
    queue: Mutex<Queue<T, R>>,
}

#[derive(Debug)]
struct Queue<T, R> {
    next_ticket: u64,
    waiting: Vec<Waiting<T, R>>,
}

/// One caller's row and its answer.
#[derive(Debug)]
pub(super) struct Waiting<T, R> {
    ticket: u64,
    row: T,
    answer: oneshot::Sender<Result<R>>,
}

impl<T, R> Default for Batch<T, R> {
    fn default() -> Self {
        Batch {
            queue: Mutex::new(Queue {
                next_ticket: 0,
                waiting: Vec::new(),
            }),
        }
    }
}

impl<T, R> Batch<T, R> {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<T, R>> {
        // The queue is left consistent at every step, so a panic elsewhere cannot spoil it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, row: T) -> (u64, oneshot::Receiver<Result<R>>) {
        let (answer, answered) = oneshot::channel();
        let mut queue = self.queue();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push(Waiting {
            ticket,
            row,
            answer,
        });
        (ticket, answered)
    }

    fn take_all(&self) -> Vec<Waiting<T, R>> {
        std::mem::take(&mut self.queue().waiting)
    }

    fn withdraw(&self, ticket: u64) {
        self.queue()
            .waiting
            .retain(|waiting| waiting.ticket != ticket);
    }
}

/// Takes a caller's row back out of the queue if it goes away before the row was taken.
struct Withdraw<'a, T, R> {
    batch: &'a Batch<T, R>,
    ticket: u64,
}

impl<T, R> Drop for Withdraw<'_, T, R> {
    fn drop(&mut self) {
        self.batch.withdraw(self.ticket);
    }
}

/// Queues `row` and waits for its answer; if this caller's turn on the connection comes first,
/// writes every row queued (with `write`, in a task of its own) and then waits for it.
pub(super) async fn submit<T, R, F, W>(
    backend: &SqliteBackend,
    batch: &Batch<T, R>,
    row: T,
    context: &'static str,
    write: W,
) -> Result<R>
where
    T: Send + 'static,
    R: Send + 'static,
    W: FnOnce(Turn, Vec<Waiting<T, R>>, Arc<AtomicBool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let (ticket, mut answered) = batch.join(row);
    let _withdraw = Withdraw { batch, ticket };
    tokio::select! {
        biased;
        answer = &mut answered => return answer_of(answer),
        turn = backend.connection(context) => {
            // No connection: this caller's row is withdrawn; the others try in their turn.
            let turn = turn?;
            // Empty when this caller's row was written in the turn before (the answer is
            // there already).
            let waiting = batch.take_all();
            if !waiting.is_empty() {
                tokio::spawn(write(turn, waiting, Arc::clone(&backend.lost)));
            }
        }
    }
    answer_of(answered.await)
}

fn answer_of<R>(answer: Result<Result<R>, oneshot::error::RecvError>) -> Result<R> {
    answer.unwrap_or_else(|_| {
        Err(Error::Interrupted(
            "the task writing it stopped before answering: it panicked, or the runtime is \
             shutting down"
                .to_owned(),
        ))
    })
}

/// Records the intents waiting, [`MAX_BATCH`] to a statement, and answers each with its id.
pub(super) async fn record_intents(
    mut turn: Turn,
    mut waiting: Vec<Waiting<NewIntentRow, i64>>,
    lost: Arc<AtomicBool>,
) {
    while !waiting.is_empty() {
        let rest = waiting.split_off(waiting.len().min(MAX_BATCH));
        let chunk = std::mem::replace(&mut waiting, rest);
        if chunk.len() > 1 {
            match insert_intents(&mut turn, &chunk).await {
                Ok(ids) => {
                    for (waiting, id) in chunk.into_iter().zip(ids) {
                        let _ = waiting.answer.send(id);
                    }
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%error, rows = chunk.len(), "batch of intents failed: one by one");
                    let _ = failed(&lost, RECORDING)(error);
                }
            }
        }
        for waiting in chunk {
            let id = insert_intent(&mut turn, &waiting.row)
                .await
                .map_err(failed(&lost, RECORDING));
            let _ = waiting.answer.send(id);
        }
    }
}

/// An outcome waiting to be recorded.
type Finishing = Waiting<FinishIntentRow, bool>;

/// Records the outcomes waiting, [`MAX_BATCH`] to a statement and never two for one intent in
/// the same statement, and answers each with whether it finished an open intent.
pub(super) async fn finish_intents(
    mut turn: Turn,
    mut waiting: Vec<Finishing>,
    lost: Arc<AtomicBool>,
) {
    while !waiting.is_empty() {
        let (chunk, rest) = distinct_intents(waiting);
        waiting = rest;
        if chunk.len() > 1 {
            match update_intents(&mut turn, &chunk).await {
                Ok(finished) => {
                    for waiting in chunk {
                        let done = finished.contains(&waiting.row.id);
                        let _ = waiting.answer.send(Ok(done));
                    }
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%error, rows = chunk.len(), "batch of outcomes failed: one by one");
                    let _ = failed(&lost, FINISHING)(error);
                }
            }
        }
        for waiting in chunk {
            let done = update_intent(&mut turn, &waiting.row)
                .await
                .map_err(failed(&lost, FINISHING));
            let _ = waiting.answer.send(done);
        }
    }
}

/// The first rows (up to [`MAX_BATCH`]) for distinct intents, and the others, in order.
fn distinct_intents(waiting: Vec<Finishing>) -> (Vec<Finishing>, Vec<Finishing>) {
    let mut ids = HashSet::new();
    let (mut chunk, mut rest) = (Vec::new(), Vec::new());
    for waiting in waiting {
        if chunk.len() < MAX_BATCH && ids.insert(waiting.row.id) {
            chunk.push(waiting);
        } else {
            rest.push(waiting);
        }
    }
    (chunk, rest)
}

/// `n` groups of 7 placeholders: `(?, ?, ?, ?, ?, ?, ?), …`.
fn placeholders(n: usize) -> String {
    vec!["(?, ?, ?, ?, ?, ?, ?)"; n].join(", ")
}

/// Inserts the intents in one statement; their ids, in the order of `chunk`.
async fn insert_intents(
    connection: &mut SqliteConnection,
    chunk: &[Waiting<NewIntentRow, i64>],
) -> Result<Vec<Result<i64>>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO journal \
         (operator, address, provider, operation, idempotency_key, inputs, at) VALUES {} \
         RETURNING id, operator, address, provider, operation, idempotency_key, at",
        placeholders(chunk.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for Waiting { row, .. } in chunk {
        query = query
            .bind(&row.operator)
            .bind(&row.address)
            .bind(&row.provider)
            .bind(&row.operation)
            .bind(&row.idempotency_key)
            .bind(Json(&row.inputs))
            .bind(row.at);
    }
    let rows = query.fetch_all(connection).await?;
    Ok(match_ids(chunk, rows))
}

/// Which returned row is whose. SQLite does not promise `RETURNING` rows in the order of
/// `VALUES`, so each row goes to the earliest caller whose intent it holds (operator, address,
/// provider, operation, key and time), rows taken in id order: the order SQLite inserted them
/// in, that of `VALUES`. Two intents alike but for their inputs so get their ids in the order
/// they were queued.
fn match_ids(chunk: &[Waiting<NewIntentRow, i64>], rows: Vec<SqliteRow>) -> Vec<Result<i64>> {
    let mut ids: Vec<Option<i64>> = vec![None; chunk.len()];
    let mut rows: Vec<(i64, SqliteRow)> = rows
        .into_iter()
        .filter_map(|row| Some((row.try_get::<i64, _>(0).ok()?, row)))
        .collect();
    rows.sort_by_key(|(id, _)| *id);
    for (id, row) in rows {
        let same = |intent: &NewIntentRow| -> bool {
            let text = |i: usize| row.try_get::<&str, _>(i).ok();
            text(1) == Some(intent.operator.as_str())
                && text(2) == Some(intent.address.as_str())
                && text(3) == Some(intent.provider.as_str())
                && text(4) == Some(intent.operation.as_str())
                && text(5) == Some(intent.idempotency_key.as_str())
                && row.try_get::<i64, _>(6).ok() == Some(intent.at)
        };
        if let Some(slot) = ids
            .iter_mut()
            .zip(chunk)
            .find_map(|(slot, waiting)| (slot.is_none() && same(&waiting.row)).then_some(slot))
        {
            *slot = Some(id);
        }
    }
    ids.into_iter()
        .map(|id| {
            id.ok_or_else(|| {
                Error::Interrupted(
                    "the database did not say which id it gave an intent; it is reconciled \
                     by the next run"
                        .to_owned(),
                )
            })
        })
        .collect()
}

/// Records the outcomes in one statement (each row as `FINISH_INTENT` would; the intents are
/// distinct); the intents it finished.
async fn update_intents(
    connection: &mut SqliteConnection,
    chunk: &[Finishing],
) -> Result<HashSet<i64>, sqlx::Error> {
    let sql = format!(
        "WITH batch (operator, intent, outcome, finished_at, change, record, updated_at) \
         AS (VALUES {}) \
         UPDATE journal SET outcome = batch.outcome, finished_at = batch.finished_at, \
         pending_change = batch.change, pending_record = batch.record, \
         pending_updated_at = batch.updated_at \
         FROM batch WHERE journal.id = batch.intent AND journal.operator = batch.operator \
         AND journal.finished_at IS NULL \
         RETURNING id",
        placeholders(chunk.len())
    );
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
    for Waiting { row, .. } in chunk {
        let (kind, record, updated_at) = row.change.as_columns();
        query = query
            .bind(&row.operator)
            .bind(row.id)
            .bind(Json(&row.outcome))
            .bind(row.finished_at)
            .bind(kind)
            .bind(record.map(Json::<&Value>))
            .bind(updated_at);
    }
    Ok(query.fetch_all(connection).await?.into_iter().collect())
}
