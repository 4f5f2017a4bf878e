//! The operator's operations (`ferry admin`): orgs, API keys and the
//! consistency check. They run on the stores the server uses, with or
//! without the server running, and keep the same rules it does (an org's
//! name is checked, a key is stored only as its hash).

use std::sync::Arc;

use ferry_blob::BlobStore;
use ferry_core::api_key::ApiKey;
use ferry_core::ids::{EndpointId, EventId, KeyId, OrgId};
use ferry_core::names::{InvalidOrgName, validate_org_name};
use ferry_core::webhook::{EventType, SigningSecret};
use ferry_meta::events::{FailedDelivery, WebhookEndpoint};
use ferry_meta::{ApiKeyRecord, MetaError, MetadataStore, OrgRecord};

use super::check::{CheckReport, check};
use super::webhooks::{EndpointUrlError, check_endpoint_url};
use super::{now_ms, now_secs};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create org `{name}`: {reason}")]
    OrgName { name: String, reason: InvalidOrgName },
    #[error("no org is named `{0}` (create it with `ferry admin org create {0}`)")]
    NoOrg(String),
    #[error("no key has the id {0}")]
    NoKey(KeyId),
    #[error(transparent)]
    EndpointUrl(#[from] EndpointUrlError),
    #[error("no webhook endpoint has the id {0}")]
    NoEndpoint(EndpointId),
    #[error("no event {0} is kept for a current endpoint (delivered events are kept 7 days)")]
    NoEvent(EventId),
    #[error(transparent)]
    Store(#[from] MetaError),
    #[error("the check could not run: {0}")]
    Check(String),
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

pub struct Admin {
    meta: Arc<dyn MetadataStore>,
}

impl Admin {
    pub fn new(meta: Arc<dyn MetadataStore>) -> Self {
        Self { meta }
    }

    pub async fn create_org(&self, name: &str) -> Result<OrgRecord> {
        validate_org_name(name).map_err(|reason| AdminError::OrgName { name: name.to_owned(), reason })?;
        Ok(self.meta.create_org(name, now_secs()).await?)
    }

    async fn org_id(&self, name: &str) -> Result<OrgId> {
        Ok(self.meta.find_org(name).await?.ok_or_else(|| AdminError::NoOrg(name.to_owned()))?.org_id)
    }

    /// A new key for the org; the key itself exists only in the answer.
    pub async fn create_key(&self, org: &str) -> Result<ApiKey> {
        let org_id = self.org_id(org).await?;
        let key = ApiKey::generate();
        self.meta.create_api_key(&org_id, &key.key_id, &key.secret_hash(), now_secs()).await?;
        Ok(key)
    }

    pub async fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>> {
        Ok(self.meta.list_api_keys(&self.org_id(org).await?).await?)
    }

    pub async fn revoke_key(&self, key_id: &KeyId) -> Result<()> {
        if !self.meta.revoke_api_key(key_id, now_secs()).await? {
            return Err(AdminError::NoKey(*key_id));
        }
        Ok(())
    }

    /// A new endpoint for the org's events (all of them if `event_types` is
    /// empty); its signing secret exists in the answer and in the store.
    pub async fn add_webhook(
        &self,
        org: &str,
        url: &str,
        event_types: Vec<EventType>,
        allow_private: bool,
    ) -> Result<WebhookEndpoint> {
        check_endpoint_url(url, allow_private)?;
        let endpoint = WebhookEndpoint {
            endpoint_id: EndpointId::generate(),
            org_id: self.org_id(org).await?,
            url: url.to_owned(),
            secret: SigningSecret::generate(),
            event_types,
            created_at: now_secs(),
        };
        self.meta.add_webhook(&endpoint).await?;
        Ok(endpoint)
    }

    pub async fn list_webhooks(&self, org: &str) -> Result<Vec<WebhookEndpoint>> {
        Ok(self.meta.list_webhooks(&self.org_id(org).await?).await?)
    }

    pub async fn remove_webhook(&self, endpoint_id: &EndpointId) -> Result<()> {
        if !self.meta.remove_webhook(endpoint_id, now_secs()).await? {
            return Err(AdminError::NoEndpoint(*endpoint_id));
        }
        Ok(())
    }

    /// Sends an event again to its endpoints; how many.
    pub async fn redeliver(&self, event_id: &EventId) -> Result<u64> {
        match self.meta.redeliver(event_id, now_ms() as i64).await? {
            0 => Err(AdminError::NoEvent(*event_id)),
            n => Ok(n),
        }
    }

    pub async fn failed_webhooks(&self, org: &str) -> Result<Vec<FailedDelivery>> {
        Ok(self.meta.failed_deliveries(&self.org_id(org).await?).await?)
    }

    /// Compares the metadata with what `blob` holds.
    pub async fn check(&self, blob: &dyn BlobStore) -> Result<CheckReport> {
        check(self.meta.as_ref(), blob).await.map_err(|e| AdminError::Check(e.to_string()))
    }
}
