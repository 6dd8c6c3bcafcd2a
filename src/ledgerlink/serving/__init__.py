"""The HTTP API of ledgerlink, in parts that are tested without HTTP; ``bentos/service.py`` wires them into BentoML.

- ``schemas``: request, answer and error bodies; validation is the whole boundary (context: ``Limits``);
- ``limits``: what a deployment lets one request ask for (environment);
- ``refusals``: the 4xx/503 answers, their bodies and their one log line;
- ``answers``: requests to the matcher's frames, ``MatchResult`` to answers;
- ``batching``: ``MicroBatcher``, concurrent ``/match`` requests in one ``match_many`` call;
- ``middleware``: body size (413), JSON only (415), the server's identity header;
- ``bento_io``: the BentoML input spec and the service class that documents the refusals.
"""
