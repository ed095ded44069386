throw new Error('msgpackr-extract is not installed in this project');
