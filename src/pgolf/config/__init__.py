"""The one typed configuration of pgolf (see `pgolf.config.schema`)."""

from pgolf.config.schema import *  # noqa: F403
from pgolf.config.schema import _CHOICES  # noqa: F401
