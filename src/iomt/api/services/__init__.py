"""Services the routes (and other layers of the app) call: image store and study analysis."""
