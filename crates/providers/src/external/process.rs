//! One running provider process: requests written to its standard input, a reader task that
//! routes each answer on its standard output to the request waiting for it, and another that
//! forwards its standard error to the logs.
//!
//! A process that exits, breaks the protocol or misses a deadline is ended: killed, every
//! request in flight answered with the reason, and marked unusable, so the provider starts a
//! new one on the next call.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fediversity_engine::events::ProgressReporter;
use fediversity_engine::{ProviderError, ProviderResult};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::protocol::Message;
use super::{Direction, ExternalOptions, Observer};

/// The longest stderr line logged as it is; longer ones are cut.
const MAX_LOG_LINE: usize = 4096;

/// The longest message line a provider may write; a longer one breaks the protocol (and would
/// otherwise let a broken provider fill the platform's memory).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A request waiting for its answer.
struct Pending {
    reply: oneshot::Sender<ProviderResult<Value>>,
    progress: Option<ProgressReporter>,
}

/// What the process's tasks share with its handle.
struct Shared {
    /// How messages name the process: the provider's name and executable.
    label: Mutex<String>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Why the process can no longer be used; `None` while it can.
    ended: Mutex<Option<ProviderError>>,
    child: Mutex<Option<Child>>,
    observer: Option<Observer>,
}

impl Shared {
    fn label(&self) -> String {
        self.label.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn ended(&self) -> Option<ProviderError> {
        self.ended.lock().ok().and_then(|e| e.clone())
    }

    /// Ends the process for `reason` (the first reason wins): kills it and answers every
    /// request in flight with the reason.
    fn end(&self, reason: ProviderError) {
        if let Ok(mut ended) = self.ended.lock()
            && ended.is_none()
        {
            *ended = Some(reason.clone());
        }
        if let Ok(mut child) = self.child.lock()
            && let Some(child) = child.as_mut()
        {
            let _ = child.start_kill();
        }
        let pending: Vec<Pending> = self
            .pending
            .lock()
            .map(|mut p| p.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        let reason = self.ended().unwrap_or(reason);
        for waiting in pending {
            let _ = waiting.reply.send(Err(reason.clone()));
        }
    }

    fn observe(&self, direction: Direction, message: &Value) {
        if let Some(observer) = &self.observer {
            observer(direction, message);
        }
    }
}

/// A running provider process.
pub(super) struct Process {
    stdin: tokio::sync::Mutex<ChildStdin>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts `exe` with `options`' arguments and environment.
    pub fn spawn(exe: &Path, options: &ExternalOptions) -> std::io::Result<Process> {
        let mut command = Command::new(exe);
        command
            .args(&options.args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if options.inherit_stderr {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .kill_on_drop(true);
        let mut child = spawn_unless_busy(&mut command)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other(
                "the process has no standard input or output",
            ));
        };
        let stderr = child.stderr.take();
        let shared = Arc::new(Shared {
            label: Mutex::new(format!("provider executable {}", exe.display())),
            pending: Mutex::new(HashMap::new()),
            ended: Mutex::new(None),
            child: Mutex::new(Some(child)),
            observer: options.observer.clone(),
        });
        let mut tasks = vec![tokio::spawn(read_answers(stdout, shared.clone()))];
        if let Some(stderr) = stderr {
            tasks.push(tokio::spawn(forward_logs(stderr, shared.clone())));
        }
        Ok(Process {
            stdin: tokio::sync::Mutex::new(stdin),
            shared,
            tasks,
        })
    }

    /// Names the process in messages from now on.
    pub fn set_label(&self, label: String) {
        if let Ok(mut l) = self.shared.label.lock() {
            *l = label;
        }
    }

    /// Whether the process can take requests.
    pub fn is_usable(&self) -> bool {
        self.shared.ended().is_none()
    }

    /// Ends the process: calls in flight fail with `reason`.
    pub fn stop(&self, reason: ProviderError) {
        self.shared.end(reason);
    }

    /// Sends request `id` and waits for its answer, at most `timeout` (after which the
    /// process is ended, since it may be stuck). `subject` names what the request is about.
    pub async fn request(
        &self,
        id: u64,
        method: &str,
        params: Value,
        progress: Option<ProgressReporter>,
        timeout: Duration,
        subject: &str,
    ) -> ProviderResult<Value> {
        if let Some(reason) = self.shared.ended() {
            return Err(reason);
        }
        let (reply, answer) = oneshot::channel();
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.insert(id, Pending { reply, progress });
        }
        // Ended meanwhile? Then the ending may have missed this request: do not wait for it.
        if let Some(reason) = self.shared.ended() {
            if let Ok(mut pending) = self.shared.pending.lock() {
                pending.remove(&id);
            }
            return Err(reason);
        }
        let request = json!({"id": id, "method": method, "params": params});
        self.shared.observe(Direction::ToProvider, &request);
        let mut line = request.to_string();
        line.push('\n');
        let exchange = async {
            let written = {
                let mut stdin = self.stdin.lock().await;
                match stdin.write_all(line.as_bytes()).await {
                    Ok(()) => stdin.flush().await,
                    Err(e) => Err(e),
                }
            };
            if let Err(error) = written {
                // The process is most likely gone: give the reader a moment to say how.
                return match tokio::time::timeout(Duration::from_secs(2), answer).await {
                    Ok(Ok(answer)) => answer,
                    _ => {
                        let reason = ProviderError::transient(format!(
                            "cannot send `{method}` of {subject} to the {}: {error}; it is started again on the next call",
                            self.shared.label()
                        ));
                        self.shared.end(reason.clone());
                        Err(reason)
                    }
                };
            }
            answer.await.unwrap_or_else(|_| {
                Err(self.shared.ended().unwrap_or_else(|| {
                    ProviderError::transient(format!(
                        "the {} stopped without answering `{method}` of {subject}",
                        self.shared.label()
                    ))
                }))
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                let reason = ProviderError::transient(format!(
                    "the {} did not answer `{method}` of {subject} within {} s: it was stopped \
                     (with any other call in flight) and is started again on the next call",
                    self.shared.label(),
                    timeout.as_secs_f32()
                ));
                self.shared.end(reason.clone());
                Err(reason)
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.shared.end(ProviderError::transient(format!(
            "the {} was stopped",
            self.shared.label()
        )));
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Routes each line of the provider's standard output to the request it answers; ends the
/// process when the output ends or breaks the protocol.
async fn read_answers(stdout: ChildStdout, shared: Arc<Shared>) {
    let mut stdout = BufReader::new(stdout);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let broken = |what: String| {
            ProviderError::permanent(format!(
                "the {} broke the protocol: {what}; it was stopped and is started again on the next call",
                shared.label()
            ))
        };
        match read_line(&mut stdout, &mut buffer, MAX_MESSAGE).await {
            Ok(LineRead::Line) => {}
            Ok(LineRead::End) => break,
            Ok(LineRead::TooLong) => {
                shared.end(broken(format!(
                    "it wrote a line longer than {MAX_MESSAGE} bytes"
                )));
                return;
            }
            Err(error) => {
                shared.end(broken(format!("its standard output failed ({error})")));
                return;
            }
        }
        let Ok(line) = std::str::from_utf8(&buffer) else {
            shared.end(broken("it wrote a line that is not UTF-8 text".to_owned()));
            return;
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            shared.observe(Direction::FromProvider, &value);
        }
        let violation = |what: String| {
            ProviderError::permanent(format!(
                "the {} broke the protocol: it wrote {what} on standard output (logs belong on \
                 standard error); it was stopped and is started again on the next call",
                shared.label()
            ))
        };
        let message = match Message::parse(line) {
            Ok(message) => message,
            Err(what) => {
                shared.end(violation(format!("{what} ({} bytes)", line.len())));
                return;
            }
        };
        let id = message.id();
        let pending = shared.pending.lock().ok().and_then(|mut p| match &message {
            Message::Progress { .. } => p.get(&id).map(|w| (None, w.progress.clone())),
            _ => p.remove(&id).map(|w| (Some(w.reply), None)),
        });
        let Some((reply, progress)) = pending else {
            shared.end(violation(format!(
                "an answer to request {id}, which is not waiting for one"
            )));
            return;
        };
        match message {
            Message::Progress {
                progress: report, ..
            } => {
                if let Some(reporter) = progress {
                    let fraction = report.fraction.map(|f| f.clamp(0.0, 1.0));
                    reporter.report(report.message, fraction);
                }
            }
            Message::Result { result, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(result));
                }
            }
            Message::Error { error, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(ProviderError {
                        kind: error.kind,
                        message: error.message,
                    }));
                }
            }
        }
    }
    // The output ended: the process exited, or is about to.
    let child = shared.child.lock().ok().and_then(|mut c| c.take());
    let status = match child {
        Some(mut child) => match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            Ok(Ok(status)) => format!(" ({status})"),
            _ => {
                let _ = child.start_kill();
                String::new()
            }
        },
        None => String::new(),
    };
    shared.end(ProviderError::transient(format!(
        "the {} exited{status}; see its log lines (standard error) for why; it is started again on the next call",
        shared.label()
    )));
}

/// How reading one line ended.
enum LineRead {
    /// A line is in the buffer (without its newline).
    Line,
    /// The output ended with no more to read.
    End,
    /// The line grew past the limit.
    TooLong,
}

/// Reads one line into `buffer`, at most `limit` bytes of it.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buffer: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<LineRead> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buffer.is_empty() {
                LineRead::End
            } else {
                LineRead::Line
            });
        }
        if let Some(end) = available.iter().position(|b| *b == b'\n') {
            buffer.extend_from_slice(&available[..end]);
            reader.consume(end + 1);
            return Ok(LineRead::Line);
        }
        let taken = available.len();
        buffer.extend_from_slice(available);
        reader.consume(taken);
        if buffer.len() > limit {
            return Ok(LineRead::TooLong);
        }
    }
}

/// Forwards the provider's standard error to the logs, one event per line. A line starting
/// with `error:`, `warn:` or `debug:` is logged at that level, any other at `info`.
async fn forward_logs(stderr: tokio::process::ChildStderr, shared: Arc<Shared>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(mut line)) = lines.next_line().await {
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …");
        }
        let provider = shared.label();
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("error:").map(|_| line[6..].trim_start()) {
            tracing::error!(%provider, "{rest}");
        } else if let Some(rest) = lower.strip_prefix("warn:").map(|_| line[5..].trim_start()) {
            tracing::warn!(%provider, "{rest}");
        } else if let Some(rest) = lower.strip_prefix("debug:").map(|_| line[6..].trim_start()) {
            tracing::debug!(%provider, "{rest}");
        } else {
            tracing::info!(%provider, "{line}");
        }
    }
}

/// Starts `command`, trying again a few times when the executable is "busy": Linux refuses to
/// run a file that some process still has open for writing, which happens for a moment after a
/// provider executable was installed, or when another thread forks while one is being written.
/// The waits are short and happen only on that error, so blocking for them is harmless.
fn spawn_unless_busy(command: &mut Command) -> std::io::Result<Child> {
    const ETXTBSY: i32 = 26;
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(error) if error.raw_os_error() == Some(ETXTBSY) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 * attempt));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_whole_and_limited() {
        let mut input: &[u8] = b"{\"id\":1}\npartial";
        let mut buffer = Vec::new();
        assert!(matches!(
            read_line(&mut input, &mut buffer, 100).await.unwrap(),
            LineRead::Line
        ));
        assert_eq!(buffer, b"{\"id\":1}");
        buffer.clear();
        assert!(matches!(
            read_line(&mut input, &mut buffer, 100).await.unwrap(),
            LineRead::Line
        ));
        assert_eq!(buffer, b"partial");
        buffer.clear();
        assert!(matches!(
            read_line(&mut input, &mut buffer, 100).await.unwrap(),
            LineRead::End
        ));
        let long = vec![b'x'; 1000];
        let mut input: &[u8] = &long;
        assert!(matches!(
            read_line(&mut input, &mut buffer, 100).await.unwrap(),
            LineRead::TooLong
        ));
    }
}
