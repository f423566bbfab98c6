"""Tables, figures, videos and the HTML report of a run."""
