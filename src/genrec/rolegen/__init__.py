"""RoleGen: the functional roles items play along a conversion trajectory, for awakening dormant users."""

from genrec.rolegen.replay import SlateOutcome, awake_before, replay_slates
from genrec.rolegen.retriever import RoleGenRetriever
from genrec.rolegen.roles import ItemRoles, RoleConfig

__all__ = ["ItemRoles", "RoleConfig", "RoleGenRetriever", "SlateOutcome", "awake_before", "replay_slates"]
