"""OAuth 2.0 connections: provider catalogue, token responses, state, token endpoint calls.

Shared by the ingress (connect flow, token API) and the oauth pool (refresh jobs).
"""
