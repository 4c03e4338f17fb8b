"""The code of the analysis commands (``maxformer transfer``, ``heatmap``, ``bandnoise``): the
networks and images they share with ``maxformer spectra``, their reports and figures. The
measures themselves live in `spectral`."""
