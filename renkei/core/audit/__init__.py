"""Tamper-evident audit log (`log`) and its countersignature by the time-stamp authority
(`timestamping`). See `renkei.core.audit.log` for the canonical form auditors recompute."""
