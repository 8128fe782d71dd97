"""The operator status page (`/ui`): server-rendered, read-only, refreshes itself."""
