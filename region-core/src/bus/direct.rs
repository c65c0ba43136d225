//! The direct-apply baseline of `bench write-pipeline` (`WritePath::Direct`):
//! each command is one `apply` transaction of a one-command batch on its
//! city's shard primary, in the api's process, answered as the writer's
//! notification would describe it. No outbox relay ordering, no retry on a
//! shard that is down: what the pipeline is measured against.

use crate::apply::fold::Outcome;
use crate::apply::{ApplyConfig, CityBatch, ShardTarget, apply};
use crate::bus::error::BusError;
use crate::bus::notify::{AppliedAt, CommandState, CommandStatus};
use crate::db::Router;
use crate::model::{Command, IdGenerator};

/// Applies commands on the primaries `router` routes to, with `ids` for
/// the outbox sequence numbers.
#[derive(Debug, Clone)]
pub struct DirectApply {
    router: Router,
    ids: IdGenerator,
}

impl DirectApply {
    /// A direct apply through the api's router and id generator.
    pub fn new(router: Router, ids: IdGenerator) -> DirectApply {
        DirectApply { router, ids }
    }

    /// `apply` of a one-command batch on the city's shard primary, in the
    /// epoch the command carries.
    pub async fn apply(&self, command: Command) -> Result<CommandStatus, BusError> {
        let city = command.city.clone();
        let epoch = command.epoch;
        let (_, pools) = self.router.route(&city)?;
        let target = ShardTarget {
            name: pools.name.clone(),
            primary: pools.primary.clone(),
        };
        let (id, post) = (command.id, command.kind.post_id());
        let batch = [CityBatch {
            city: city.clone(),
            epoch,
            commands: vec![command],
        }];
        let applied = apply(&target, &batch, &self.ids, ApplyConfig::default())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "direct apply");
                BusError::ShardUnavailable(city.clone())
            })?;
        if let Some(refused) = applied.refused.first() {
            tracing::info!(%refused, "direct apply refused by the fence");
            return Err(BusError::ShardUnavailable(city));
        }
        let outcome = applied
            .results
            .iter()
            .find(|r| r.command_id == id)
            .map(|r| r.outcome.clone())
            .ok_or_else(|| anyhow::anyhow!("apply returned no result"))?;
        let (state, reason, version) = match outcome {
            Outcome::Applied { version } => (CommandState::Applied, None, version.unwrap_or(0)),
            Outcome::Rejected(r) => (CommandState::Rejected, Some(r), 0),
        };
        Ok(CommandStatus {
            command: id,
            city: Some(city),
            state,
            reason,
            post,
            applied: (state == CommandState::Applied).then(|| AppliedAt {
                shard: applied.shard.clone(),
                epoch,
                lsn: applied.lsn,
                version,
            }),
        })
    }
}
