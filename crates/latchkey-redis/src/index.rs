//! The owner indexes: one set per owner of the hex ids of its sessions, kept
//! in step with the session values, which record the indexes that hold them.

use latchkey_core::{SessionId, StoreError, Timestamp};
use redis::Value;
use redis::aio::ConnectionLike;

use crate::replies::{integer, text};
use crate::scripts::Call;
use crate::store::RedisStore;
use crate::transport::Resend;

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// The hex ids in an owner's index.
    pub(crate) async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(index);
        self.bounded(self.send(&cmd, Resend::Always)).await
    }

    /// Drops entries from an owner's index.
    pub(crate) async fn drop_index_members(
        &self,
        index: &str,
        members: Vec<String>,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(index).arg(members);
        self.bounded(self.send::<()>(&cmd, Resend::Always)).await
    }

    fn index_call(&self, owner: &str, id: &SessionId, absolute: Timestamp) -> Call<'_> {
        Call::new(
            &self.shared.scripts.index_add,
            self.owner_key(owner).into_bytes(),
        )
        .arg(id.to_hex())
        .arg(absolute.as_millis())
        .arg(Timestamp::now().as_millis())
    }

    /// Makes sure the owner's index holds the session, unless the session's
    /// value already records that it does (`indexed`): adds it to the index,
    /// then records that in the value. Entries are never removed on an owner
    /// change (readers check each entry's owner), so a recorded entry stays
    /// true for as long as the session exists; a failure leaves nothing
    /// recorded, and the next save or touch of the session adds it again.
    pub(crate) async fn reindex(
        &self,
        id: &SessionId,
        indexed: bool,
        owner: Option<&str>,
        absolute: Timestamp,
    ) -> Result<(), StoreError> {
        let Some(owner) = owner.filter(|_| !indexed) else {
            return Ok(());
        };
        integer(
            self.eval(vec![self.index_call(owner, id, absolute)])
                .await?
                .into_iter()
                .next(),
        )?;
        let mark = Call::new(
            &self.shared.scripts.mark_indexed,
            self.session_key(id).into_bytes(),
        )
        .arg(owner);
        integer(self.eval(vec![mark]).await?.into_iter().next())?;
        Ok(())
    }

    /// Removes a deleted session from the indexes that held it.
    pub(crate) async fn unindex(&self, id: &SessionId, owners: &[Value]) -> Result<(), StoreError> {
        let member = id.to_hex();
        let mut calls = Vec::new();
        for owner in owners {
            let owner = text(owner)?;
            calls.push(
                Call::new(
                    &self.shared.scripts.index_remove,
                    self.owner_key(&owner).into_bytes(),
                )
                .arg(&member),
            );
        }
        if calls.is_empty() {
            return Ok(());
        }
        for reply in self.eval(calls).await? {
            integer(Some(reply))?;
        }
        Ok(())
    }

    /// One pass of `delete_by_owner`: deletes the sessions the owner's index
    /// names (but `keep`) that still belong to the owner, and clears the
    /// entries of those deleted or already gone; `None` when there were none,
    /// so that another pass would find nothing new.
    pub(crate) async fn delete_indexed(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<Option<u64>, StoreError> {
        let index = self.owner_key(owner);
        let keep_hex = keep.map(SessionId::to_hex);
        let doomed: Vec<String> = self
            .index_members(&index)
            .await?
            .into_iter()
            .filter(|m| Some(m) != keep_hex.as_ref())
            .collect();
        if doomed.is_empty() {
            return Ok(None);
        }
        let calls = doomed
            .iter()
            .map(|member| {
                Call::new(
                    &self.shared.scripts.delete_if_owned,
                    self.member_key(member).into_bytes(),
                )
                .arg(owner)
            })
            .collect();
        let mut deleted = 0;
        let mut settled = Vec::new();
        for (member, reply) in doomed.into_iter().zip(self.eval(calls).await?) {
            match integer(Some(reply))? {
                1 => {
                    deleted += 1;
                    settled.push(member);
                }
                // Gone already: its entry can never be live again.
                -1 => settled.push(member),
                // Someone else's now: left for readers to skip, since removing
                // it could race an owner change back to this owner.
                _ => {}
            }
        }
        if settled.is_empty() {
            return Ok(None);
        }
        self.drop_index_members(&index, settled).await?;
        Ok(Some(deleted))
    }
}
