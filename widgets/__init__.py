"""Custom Streamlit widgets of the dashboard (st.components.v2: inline HTML/CSS/JS, no npm build)."""
