"""RoleGen: the functional roles items play along a conversion trajectory, for awakening dormant users."""

from genrec.rolegen.roles import ItemRoles, RoleConfig

__all__ = ["ItemRoles", "RoleConfig"]
