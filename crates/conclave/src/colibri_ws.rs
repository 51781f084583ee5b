//! The bridge channel over WebSocket (Jitsi's colibri-ws):
//! `/colibri-ws/<bridge>/<conference>/<endpoint>?pwd=<ICE password>`.
//! This is only the door and the socket; what the messages mean is
//! `conclave_bridge::channel`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclave_bridge::Bridge;
use conclave_bridge::api::EndpointKey;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub fn routes<S: Clone + Send + Sync + 'static>(bridge: Arc<Bridge>) -> Router<S> {
    Router::new()
        .route("/colibri-ws/{bridge}/{conference}/{endpoint}", get(channel))
        .with_state(bridge)
}

#[derive(serde::Deserialize)]
struct Pwd {
    pwd: Option<String>,
}

async fn channel(
    State(bridge): State<Arc<Bridge>>,
    Path((id, conference, endpoint)): Path<(String, String, String)>,
    Query(q): Query<Pwd>,
    mut req: Request,
) -> Response {
    let h = req.headers();
    if !crate::http::is_websocket_upgrade(h) {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "WebSocket upgrade required\n",
        )
            .into_response();
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|k| !k.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key\n").into_response();
    };
    let accept = crate::http::accept_key(key.as_bytes());
    let ep = EndpointKey {
        conference,
        endpoint,
    };
    let out = match (id == bridge.id(), q.pwd) {
        (true, Some(pwd)) => bridge.channels.open(&ep, &pwd),
        _ => None,
    };
    // One answer for a wrong bridge, endpoint or password: nothing to
    // tell a prober which one it got wrong.
    let Some((socket, out)) = out else {
        metrics::counter!("conclave_bridge_channel_refused_total").increment(1);
        return (
            StatusCode::FORBIDDEN,
            "unknown endpoint or wrong password\n",
        )
            .into_response();
    };
    let upgrade = hyper::upgrade::on(&mut req);
    // Messages over the setting are dropped (and counted) by the channel;
    // only one far beyond it, which is not worth reading, ends the socket.
    let max = bridge.channels.max_bytes().saturating_mul(4);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_frame_size(Some(max))
            .max_message_size(Some(max));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await;
        let (mut tx, mut rx) = ws.split();
        loop {
            tokio::select! {
                m = out.recv_async() => match m {
                    Ok(text) => {
                        // The bridge wrote it from a `String`: always UTF-8.
                        let Ok(text) = Utf8Bytes::try_from(text) else { continue };
                        if tx.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    // The endpoint expired or another socket replaced this one.
                    Err(_) => break,
                },
                m = rx.next() => match m {
                    Some(Ok(Message::Text(t))) => match bridge.channels.incoming(&ep, t.as_str()) {
                        Ok(Some(m)) => bridge.from_channel(&ep, m),
                        Ok(None) => {}
                        Err(e) => tracing::debug!(?e, "bridge channel message dropped"),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_))) => {}
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                        metrics::counter!("conclave_bridge_channel_dropped_total", "reason" => "too-large").increment(1);
                        let _ = tx.send(Message::Close(None)).await;
                        break;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                },
            }
        }
        bridge.channels.closed(&ep, socket);
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "upgrade".to_owned()),
            (header::UPGRADE, "websocket".to_owned()),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response()
}
