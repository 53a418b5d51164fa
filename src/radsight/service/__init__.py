"""``radsight serve``: a triage worklist service (REST, STOW-RS, Orthanc polling) with a reader's viewer."""
