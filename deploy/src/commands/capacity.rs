//! `cityboard capacity`: prints the fleet plan of [`crate::capacity`] as a
//! table (or JSON), with the figures and assumptions it rests on.

use anyhow::Result;

use crate::capacity::{Demand, FIGURES, MIX, plan, table};

/// Prints the plan for `demand`.
pub fn run(demand: &Demand, json: bool) -> Result<()> {
    let rows = plan(demand);
    if json {
        let mix: serde_json::Map<String, serde_json::Value> = MIX
            .iter()
            .map(|(what, share)| (what.to_string(), (*share).into()))
            .collect();
        let doc = serde_json::json!({
            "demand": demand,
            "plan": rows,
            "mix": mix,
            "figures": FIGURES,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(demand, &rows));
    }
    Ok(())
}
