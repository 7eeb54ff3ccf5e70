"""Programs that drive the package from outside: demo, e2e bench, soak, bag player, synthetic sensors."""
