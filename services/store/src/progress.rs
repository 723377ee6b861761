//! How far each stage of the pipeline is behind the event store, per tenant: read at scrape
//! time by `/metrics`, whichever roles the serving process runs.
//!
//! The statement reads the relay's and the projections' checkpoint tables read-only; the stages
//! that own those tables are the only ones that write them.

use uuid::Uuid;

/// One stage's lag for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    /// The tenant.
    pub tenant: Uuid,
    /// `relay`, or a projection's name.
    pub stage: String,
    /// Events committed but not yet relayed or applied.
    pub events: i64,
    /// Age of the oldest event not yet relayed or applied (0 when caught up).
    pub seconds: f64,
}

/// The lag of the relay and of each projection in `projections`, per tenant.
pub async fn lag(pool: &sqlx::PgPool, projections: &[&str]) -> Result<Vec<Lag>, sqlx::Error> {
    // "relay" is the relay; the others are projections. Seconds: from the recorded_at of the
    // first event past the checkpoint (0 when caught up).
    let rows: Vec<(Uuid, String, i64, f64)> = sqlx::query_as(
        "with progress as (
             select tenant_id, 'relay' as stage, position from relay_checkpoints
             union all
             select h.tenant_id, p.name, coalesce(c.position, 0)
               from tenant_heads h
              cross join unnest($1::text[]) as p(name)
               left join read.checkpoints c on c.tenant_id = h.tenant_id and c.projection = p.name
         )
         select h.tenant_id, p.stage, h.position - p.position,
                coalesce(extract(epoch from now() - e.recorded_at), 0)::float8
           from progress p
           join tenant_heads h on h.tenant_id = p.tenant_id
           left join events e on e.tenant_id = p.tenant_id and e.position = p.position + 1
          order by 1, 2",
    )
    .bind(projections)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant, stage, events, seconds)| Lag {
            tenant,
            stage,
            events,
            seconds,
        })
        .collect())
}
