"""The code of the analysis commands (``maxformer spectra``, ``transfer``, ``heatmap``,
``bandnoise``): the networks and images they read (`networks`, `images`), the spatial spectra and
Grad-CAM rows of ``spectra`` (`spectra`), the temporal transfer and Fourier measures of the others
(`transfer`, `fourier`, `common`), their reports and figures (`report`, `figures`), and the
summaries of these measures that a study records per cell (`cell_measures`). The measures
themselves live in `spectral`; the command-line modules in `models.app.commands`."""
