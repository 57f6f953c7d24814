"""Apps over the predictor library: the HTTP service and the predictor commands."""
