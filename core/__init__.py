"""Pneumonia X-ray library: data, imaging, training, evaluation and explanation (no Streamlit here)."""
