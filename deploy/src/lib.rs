//! The cityboard orchestrator.
