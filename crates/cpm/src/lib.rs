//! cpm: a self-hosted git repository manager.
