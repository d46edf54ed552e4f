"""Step 5: the mediation agreement (调解协议书), its signatures and its sealed, filed form."""
