"""One spec per family: the declarative layer map that drives conversion in both directions."""
