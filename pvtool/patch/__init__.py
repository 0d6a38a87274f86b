"""The patcher: load -> discover code -> find sites -> plan a rewrite per site -> emit ->
verify -> write, driven by a patch set from patches/ (DESIGN.md, "The patcher")."""
