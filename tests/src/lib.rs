//! Helpers for the scenario tests: find or start a stack, drive it as users and operators would.
