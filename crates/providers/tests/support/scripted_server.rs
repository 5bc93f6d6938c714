//! A tiny HTTP/1.1 server on a loopback socket that answers from a script, for tests that
// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]
//! need answers no well-behaved simulator gives (a dropped connection at a chosen moment,
//! a body echoing a secret, a hang).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub enum Action {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, then close the connection without a word.
    Drop,
    /// Read the request and never answer.
    Hang,
}

impl Action {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Action::Respond {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    pub fn with_header(self, name: &str, value: &str) -> Self {
        match self {
            Action::Respond {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.to_owned(), value.to_owned()));
                Action::Respond {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    /// `POST /v1/projects?x=y HTTP/1.1` and the header lines, as sent.
    pub head: String,
    pub body: String,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct ScriptedServer {
    pub url: String,
    script: Arc<Mutex<VecDeque<Action>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl ScriptedServer {
    pub async fn start(actions: Vec<Action>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let server = ScriptedServer {
            url,
            script: Arc::new(Mutex::new(actions.into())),
            received: Arc::new(Mutex::new(Vec::new())),
        };
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = accepting.clone();
                tokio::spawn(async move { connection.serve(stream).await });
            }
        });
        server
    }

    /// Appends an answer to the script (for answers that must name the server's own URL).
    pub fn push(&self, action: Action) {
        self.script.lock().expect("lock").push_back(action);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    async fn serve(&self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let Some((head, body)) = read_request(&mut stream, &mut buffer).await else {
                return;
            };
            self.received.lock().expect("lock").push(Received {
                head,
                body,
                at: Instant::now(),
            });
            let action = self
                .script
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or_else(|| {
                    Action::json(500, serde_json::json!({"message": "script exhausted"}))
                });
            match action {
                Action::Respond {
                    status,
                    headers,
                    body,
                } => {
                    let mut response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        response.push_str(&format!("{name}: {value}\r\n"));
                    }
                    response.push_str("\r\n");
                    response.push_str(&body);
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Action::Drop => return,
                Action::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
            }
        }
    }
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, String)> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[body_start..body_start + length]).into_owned();
    buffer.drain(..body_start + length);
    Some((head, body))
}
