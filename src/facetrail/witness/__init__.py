"""The witness service another office runs (``facetrail witness serve``): it holds the signed heads of the audit
trails of the logs registered with it, checks each against its log's key and the heads it already holds, and answers
with its own countersignature (a receipt). It has its own directory and its own key, and knows nothing of a facetrail
data directory: ``office`` is the directory, ``app`` the HTTP service."""
