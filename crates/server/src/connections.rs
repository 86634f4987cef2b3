//! How the gateway accepts and bounds client connections. The listener accepts a connection
//! only while fewer than the limit are open, so many idle or slow clients cannot exhaust the
//! process's file descriptors or memory (the rest wait in the kernel's accept queue until one
//! closes); and [`serve`] closes a connection whose request headers do not arrive in time, so
//! clients that trickle headers (or open a connection and send nothing) cannot hold those
//! places. `axum::serve` has no header-read timeout, hence this accept loop. A connection
//! whose client stops reading its response (a write that makes no progress for the write
//! timeout) is closed too, so a client cannot hold its place by never reading.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A TCP listener that holds at most `limit` connections open at once.
#[derive(Debug)]
pub struct LimitedListener {
    inner: TcpListener,
    open: Arc<Semaphore>,
    write_timeout: Duration,
}

/// How long a write to a client may make no progress when none is set.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl LimitedListener {
    pub fn new(inner: TcpListener, limit: usize) -> LimitedListener {
        LimitedListener {
            inner,
            open: Arc::new(Semaphore::new(limit.max(1))),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }

    /// Connections whose writes make no progress for `timeout` fail (and close).
    pub fn with_write_timeout(mut self, timeout: Duration) -> LimitedListener {
        self.write_timeout = timeout;
        self
    }
}

/// An accepted connection; its place is given back when it closes.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
    write_timeout: Duration,
    /// Started when a write finds the socket full; reset by any write that goes through.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    /// `poll` of a write: its progress resets the stall timer, and a stall longer than the
    /// write timeout is an error.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        use std::future::Future;
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} s", timeout.as_secs_f32()),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl Listener for LimitedListener {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Counted, std::net::SocketAddr) {
        // The semaphore is never closed, so waiting for a place cannot fail.
        let place = loop {
            if let Ok(p) = self.open.clone().acquire_owned().await {
                break p;
            }
        };
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        (
            Counted {
                stream,
                _place: place,
                write_timeout: self.write_timeout,
                stalled: None,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.progress(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets every open connection
/// finish its request in flight (idle ones close at once) and returns when all have.
/// A connection whose request headers take longer than `header_read_timeout` to arrive
/// (the first request's or a later one's on a kept-alive connection) is closed.
pub async fn serve(
    mut listener: LimitedListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut open = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _addr) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        // Finished connections leave the set as new ones arrive.
        while open.try_join_next().is_some() {}
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        open.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = async { drop(stop.wait_for(|stop| *stop).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    let _ = stop_tx.send(true);
    while open.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn ask(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 256];
        let n = stream.read(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn connections_past_the_limit_wait_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(serve(
            LimitedListener::new(listener, 2),
            app,
            Duration::from_secs(60),
            std::future::pending(),
        ));
        let mut a = TcpStream::connect(addr).await.expect("a");
        let mut b = TcpStream::connect(addr).await.expect("b");
        assert!(ask(&mut a).await.starts_with("HTTP/1.1 200"));
        assert!(ask(&mut b).await.starts_with("HTTP/1.1 200"));
        // A third (idle keep-alive) connection past the limit is not served while a and b
        // stay open...
        let mut c = TcpStream::connect(addr).await.expect("c");
        let waiting = tokio::time::timeout(Duration::from_millis(300), ask(&mut c)).await;
        assert!(
            waiting.is_err(),
            "a third connection was served: {waiting:?}"
        );
        // ...and is once one of them closes.
        drop(a);
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("served after a close")
            .expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_or_sends_nothing_is_disconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(serve(
            LimitedListener::new(listener, 2),
            app,
            Duration::from_millis(300),
            std::future::pending(),
        ));
        // Both places taken: one client never finishes its headers, one sends nothing.
        let mut slow = TcpStream::connect(addr).await.expect("slow");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
            .await
            .expect("write");
        let mut silent = TcpStream::connect(addr).await.expect("silent");
        for (name, stream) in [("trickling", &mut slow), ("silent", &mut silent)] {
            // The server closes it (after a 408, or without a word): reads reach the end.
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest))
                    .await
                    .expect("the server never closed the connection");
            if let Err(e) = &closed {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{name}: {e}");
            }
            let text = String::from_utf8_lossy(&rest);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{name}: {text}"
            );
        }
        // Their places are free again for a client that asks promptly.
        let mut prompt = TcpStream::connect(addr).await.expect("prompt");
        assert!(ask(&mut prompt).await.starts_with("HTTP/1.1 200"));
    }

    /// A client that asks for a large response and never reads it held its connection's
    /// place for as long as it liked. Now the stalled write fails and the place is freed.
    #[tokio::test]
    async fn a_client_that_stops_reading_its_response_is_disconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let big = vec![b'x'; 64 << 20];
        let app = Router::new()
            .route("/big", get(move || std::future::ready(big.clone())))
            .route("/", get(|| async { "ok" }));
        tokio::spawn(serve(
            LimitedListener::new(listener, 1).with_write_timeout(Duration::from_millis(300)),
            app,
            Duration::from_secs(60),
            std::future::pending(),
        ));
        let mut stuck = TcpStream::connect(addr).await.expect("stuck");
        stuck
            .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        // The only place is held by `stuck`, which reads nothing; another client is served
        // once the server gives up on it.
        let mut next = TcpStream::connect(addr).await.expect("next");
        let answer = tokio::time::timeout(Duration::from_secs(20), ask(&mut next))
            .await
            .expect("served once the stalled connection was closed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(stuck);
    }

    #[tokio::test]
    async fn shutdown_finishes_the_request_in_flight_and_then_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            LimitedListener::new(listener, 4),
            app,
            Duration::from_secs(10),
            async move {
                let _ = stopped.await;
            },
        ));
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = stop.send(());
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.expect("read");
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.ends_with("done"),
            "{reply}"
        );
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("serve returned")
            .expect("serve task");
    }
}
