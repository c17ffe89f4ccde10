"""STGR records (validation, targets, reward metadata), the grain pipeline that batches
them, and the synthetic grounded-video generator."""
