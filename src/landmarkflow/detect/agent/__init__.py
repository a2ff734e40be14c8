"""Patient-specific deep Q-network agents for landmark redetection (Waldmannstetter et al., WBIR 2020)."""
