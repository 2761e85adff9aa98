"""Side panels: image list, boxes table, classes, detections controls, log, status bar. Views only: each
re-renders from the Document on its change notifications and edits through undo commands."""
