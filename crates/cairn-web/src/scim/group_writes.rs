//! Each tenant's bounded share of the group writes in flight, and the group bounds of an
//! application state ([`GroupLimits`], held in `AppState`, so two routers in one process
//! do not share them). A group POST, PUT, PATCH or DELETE can name up to
//! `members_per_write` members and is written in one transaction; on SQLite every
//! tenant's writes go through one writer, in arrival order. At most `writes_per_tenant`
//! (by default [`GROUP_WRITES_PER_TENANT`]) group writes of one tenant are in flight at
//! once (from the moment the request is authenticated, body included), so another
//! tenant's write queues behind at most that many; a further one waits up to [`WAIT`]
//! for a slot, then gets `429` with `Retry-After` (RFC 6585 §4), which Okta and Entra
//! retry.

use super::extract::Scim;
use super::response::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use cairn_core::ids::TenantId;
use cairn_scim::ScimError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Group writes of one tenant in flight at once by default
/// (`--scim-group-writes-per-tenant`).
pub const GROUP_WRITES_PER_TENANT: u32 = 4;

/// The group bounds of one application state (`AppState::group_limits`), set by `serve`
/// from its flags, and the slots of the tenants writing groups right now.
pub struct GroupLimits {
    /// The most members a group carries in a list or search response
    /// (`--scim-list-members-max`).
    pub list_members: u32,
    /// The most members one group write may name (`--scim-members-per-write-max`).
    pub members_per_write: u32,
    /// Group writes of one tenant in flight at once (`--scim-group-writes-per-tenant`);
    /// 0 turns the bound off.
    pub writes_per_tenant: u32,
    /// The tenants with group writes in flight or waiting, and their slots. An entry
    /// lives only while someone holds or waits for its semaphore, so the map is bounded
    /// by the authenticated tenants writing groups right now.
    slots: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

impl GroupLimits {
    /// The given bounds, with no group writes in flight.
    pub fn new(list_members: u32, members_per_write: u32, writes_per_tenant: u32) -> Arc<Self> {
        Arc::new(GroupLimits {
            list_members,
            members_per_write,
            writes_per_tenant,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Arc<Semaphore>>> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the tenant's semaphore once nobody holds or waits for it.
    fn tidy(&self, tenant: &TenantId) {
        let mut map = self.slots();
        if map.get(tenant).is_some_and(|s| Arc::strong_count(s) == 1) {
            map.remove(tenant);
        }
    }
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            list_members: cairn_core::service::LIST_MEMBERS_MAX,
            members_per_write: cairn_core::service::MEMBERS_PER_WRITE_MAX,
            writes_per_tenant: GROUP_WRITES_PER_TENANT,
            slots: Mutex::new(HashMap::new()),
        }
    }
}

/// How long a group write waits for one of its tenant's slots before `429`.
const WAIT: Duration = Duration::from_secs(2);

/// An authenticated SCIM request that holds one of its tenant's group-write slots until
/// the response is produced. Authentication (and the rate limit) come first, so only a
/// tenant's own token can take its slots.
pub struct GroupWrite {
    pub ctx: Scim,
    permit: Option<OwnedSemaphorePermit>,
    tenant: TenantId,
    limits: Arc<GroupLimits>,
}

impl Drop for GroupWrite {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limits.tidy(&self.tenant);
    }
}

impl FromRequestParts<AppState> for GroupWrite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ctx = Scim::from_request_parts(parts, state).await?;
        let tenant = ctx.0.tenant_id().clone();
        let limits = state.group_limits.clone();
        let per_tenant = limits.writes_per_tenant;
        if per_tenant == 0 {
            return Ok(GroupWrite {
                ctx,
                permit: None,
                tenant,
                limits,
            });
        }
        let sem = limits
            .slots()
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(per_tenant as usize)))
            .clone();
        let acquired = tokio::time::timeout(WAIT, sem.acquire_owned()).await;
        match acquired {
            Ok(Ok(permit)) => Ok(GroupWrite {
                ctx,
                permit: Some(permit),
                tenant,
                limits,
            }),
            _ => {
                limits.tidy(&tenant);
                tracing::debug!(%tenant, "group writes of this tenant at their bound");
                Err(ApiError(ScimError::new(
                    429,
                    None,
                    format!(
                        "this tenant already has {per_tenant} group changes in progress; \
                         retry after 1 s"
                    ),
                )))
            }
        }
    }
}
