"""OctoPrint-PrintBridge: makes an OctoPrint instance a printbridge printer agent.

OctoPrint loads `octoprint_printbridge.plugin` (the entry point in group `octoprint.plugin`); the other
modules never import OctoPrint, so that they are tested without it.
"""

__version__ = "0.1.0"
