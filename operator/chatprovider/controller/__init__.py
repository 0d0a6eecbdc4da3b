"""The operator: kopf handlers (:mod:`.handlers`), the work queue (:mod:`.reconciler`), the HTTP
prober (:mod:`.prober`), reference resolution (:mod:`.references`), Events (:mod:`.events`), and
the process that wires them (:mod:`.app`)."""

from chatprovider.controller.app import OperatorApp

__all__ = ["OperatorApp"]
