"""Reviewing proposals: the decisions (accept, reject, modify and accept) as undo
commands, the controller that times them, the worker that asks the engine for
proposals, and the review panel."""
