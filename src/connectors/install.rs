//! Calls the installers share: through the guard, with a refused address blamed on the key
//! field that named it.

use reqwest::{RequestBuilder, Response};
use serde_json::Value;

use super::net::{CallError, Outbound};
use super::registry::InstallError;

/// Sends through the guard: a refused host is the key's mistake (naming `field`), any other
/// failure the system's.
pub async fn call(
    net: &Outbound,
    req: RequestBuilder,
    what: &str,
    field: &'static str,
) -> Result<Response, InstallError> {
    net.send(req, None).await.map_err(|e| match e {
        CallError::Blocked(_) => InstallError::Refused {
            field,
            message: format!(
                "{}: {what} {e}. Point the key at the system's public address.",
                e.code().as_str()
            ),
        },
        other => InstallError::Upstream(format!("{what}: {other}")),
    })
}

/// The system's answer as JSON (`null` when it is not JSON), or an error quoting it.
pub async fn answer(net: &Outbound, res: Response, what: &str) -> Result<Value, InstallError> {
    let status = res.status();
    if !status.is_success() {
        let text = net.read_excerpt(res).await;
        let excerpt: String = text.chars().take(300).collect();
        return Err(InstallError::Upstream(format!(
            "{what}: the system answered {status}: {excerpt}"
        )));
    }
    let body = net
        .read_capped(res)
        .await
        .map_err(|e| InstallError::Upstream(format!("{what}: {e}")))?;
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Sends a removal; an answer of 404 means it is already gone.
pub async fn remove(
    net: &Outbound,
    req: RequestBuilder,
    what: &str,
    field: &'static str,
) -> Result<(), InstallError> {
    let res = call(net, req, what, field).await?;
    if res.status().as_u16() != 404 {
        answer(net, res, what).await?;
    }
    Ok(())
}
